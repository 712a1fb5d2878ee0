// Command cri-reset stops and removes every pod sandbox of a CRI runtime, as `crictl stopp` and
// `crictl rmp` would (crictl is not on the Go module proxy). hack/k8s/node calls it when the
// node goes down: stopping a sandbox through CRI runs the CNI DEL that removes the pod's network
// namespace, veth, IP reservation and iptables rules; killing the processes would leak them.
//
//	cri-reset unix:///path/to/containerd.sock
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.opentelemetry.io/otel/trace/noop"
	criclient "k8s.io/cri-client/pkg"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: cri-reset ENDPOINT")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runtime, err := criclient.NewRemoteRuntimeService(ctx, os.Args[1], 10*time.Second, noop.NewTracerProvider(), false)
	if err != nil {
		fail(err)
	}
	sandboxes, err := runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		fail(err)
	}
	failed := false
	for _, sb := range sandboxes {
		name := sb.GetMetadata().GetNamespace() + "/" + sb.GetMetadata().GetName()
		if err := runtime.StopPodSandbox(ctx, sb.GetId()); err != nil {
			fmt.Fprintf(os.Stderr, "stop %s: %v\n", name, err)
			failed = true
			continue
		}
		if err := runtime.RemovePodSandbox(ctx, sb.GetId()); err != nil {
			fmt.Fprintf(os.Stderr, "remove %s: %v\n", name, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "cri-reset:", err)
	os.Exit(1)
}
