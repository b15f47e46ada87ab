"""The Kubernetes client: kubeconfig, one error tree, the reflector, the work queue, the Event recorder.

It knows nothing of the cloud.
"""
