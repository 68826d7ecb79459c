// Command coredns is CoreDNS with only the plugins the sandbox's cluster DNS uses
// (a Corefile of bind, errors, health, ready, kubernetes, cache, loadbalance). CoreDNS's own
// main (github.com/coredns/coredns/coredns.go) links every plugin, cloud SDKs included;
// this one links seven, so it builds in a fraction of the time.
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
