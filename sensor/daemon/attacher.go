package daemon

import (
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/peerwatch/peerwatch/sensor/config"
	"github.com/peerwatch/peerwatch/sensor/datapath"
)

// attacher attaches the program with the hook configured for the interface
// that linkwatch found.
type attacher struct {
	dp     *datapath.Datapath
	ifaces []config.Interface
}

func (a *attacher) Attach(ifname string) (string, error) {
	hook, err := a.hookOf(ifname)
	if err != nil {
		return "", err
	}
	mode, err := a.dp.Attach(ifname, datapath.Hook(hook))
	return string(mode), err
}

func (a *attacher) Detach(ifname string) error { return a.dp.Detach(ifname) }

// hookOf finds the configured interface that ifname is: by name, MAC or
// altname, all of those set having to match.
func (a *attacher) hookOf(ifname string) (config.Hook, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return "", fmt.Errorf("look up %s: %w", ifname, err)
	}
	attrs := link.Attrs()
	for _, ifc := range a.ifaces {
		if ifc.Name != "" && ifc.Name != attrs.Name {
			continue
		}
		if ifc.MAC != "" {
			mac, err := net.ParseMAC(ifc.MAC)
			if err != nil || !strings.EqualFold(mac.String(), attrs.HardwareAddr.String()) {
				continue
			}
		}
		if ifc.AltName != "" && !contains(attrs.AltNames, ifc.AltName) {
			continue
		}
		return ifc.Hook, nil
	}
	return "", fmt.Errorf("%s matches no configured interface", ifname)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
