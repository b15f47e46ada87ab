"""Every cloud call: the port, the signed client, the vendor's parameters, credentials, accounts,
the budget and the circuit.
"""
