"""The operator process: Kopf's handlers (the only module that imports kopf) over a typed
composition root, the executor and its workers.
"""
