//go:build tools

// Package tools records the Kubernetes node commands this module builds, so that
// `go mod tidy` keeps them in go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
