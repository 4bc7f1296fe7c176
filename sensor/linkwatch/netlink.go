package linkwatch

import (
	"context"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// useNetlink makes the watcher read links through netlink: through h and in
// the namespace ns, or in the current namespace where they are nil. Tests
// replace linkList and subscribe with synthetic links.
func (w *Watcher) useNetlink(h *netlink.Handle, ns *netns.NsHandle) {
	w.linkList = netlink.LinkList
	if h != nil {
		w.linkList = h.LinkList
	}
	// subscribe sends the existing links, then every update, on ch until
	// ctx is done or the socket fails, and then closes ch.
	w.subscribe = func(ctx context.Context, ch chan<- netlink.LinkUpdate, onErr func(error)) error {
		return netlink.LinkSubscribeWithOptions(ch, ctx.Done(), netlink.LinkSubscribeOptions{
			Namespace:     ns,
			ErrorCallback: onErr,
			ListExisting:  true,
		})
	}
}
