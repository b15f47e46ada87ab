"""Build and run a real local kube-apiserver + etcd (and helm) for tests and the demo."""
