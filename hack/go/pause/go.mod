// The pod sandbox ("pause") binary of the local node (hack/k8s/node): no image registry is
// reachable, so the sandbox image is made from this static binary on the machine.
module walletcluster.local/hack/pause

go 1.26.0
