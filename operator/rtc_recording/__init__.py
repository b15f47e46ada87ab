"""Kubernetes operator for Alibaba Cloud RTC cloud recordings."""
