package raynode

import (
	"context"
	"fmt"
	"net"
)

// NodeIPSource is what the IP choice needs to know.
type NodeIPSource struct {
	// Override is --node-ip; Interface is --interface.
	Override, Interface string
	// SlurmAddr returns the address SLURM knows for this node (its NodeAddr);
	// nil outside SLURM.
	SlurmAddr func(ctx context.Context) (string, error)
	// Lookup resolves a host name (net.DefaultResolver.LookupHost).
	Lookup func(ctx context.Context, host string) ([]string, error)
	// InterfaceAddrs returns the addresses of a named interface.
	InterfaceAddrs func(name string) ([]net.Addr, error)
}

// Choose returns the address this Ray node advertises. Multi-homed nodes make
// Ray's own guess unreliable, so the address SLURM uses for the node wins; a
// loopback address is accepted only when SLURM itself names one (never the
// 127.0.1.1 that Debian's /etc/hosts gives the host name).
func (s NodeIPSource) Choose(ctx context.Context) (string, error) {
	if s.Override != "" {
		if net.ParseIP(s.Override) == nil {
			return "", fmt.Errorf("invalid --node-ip %q: give an IPv4 or IPv6 address", s.Override)
		}
		return s.Override, nil
	}
	if s.Interface != "" {
		addrs, err := s.InterfaceAddrs(s.Interface)
		if err != nil {
			return "", fmt.Errorf("interface %q: %w", s.Interface, err)
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String(), nil
			}
		}
		return "", fmt.Errorf("interface %q has no IPv4 address: pick another with --interface or give --node-ip", s.Interface)
	}
	if s.SlurmAddr == nil {
		return "", fmt.Errorf("not in a SLURM job: give --node-ip or --interface")
	}
	addr, err := s.SlurmAddr(ctx)
	if err != nil {
		return "", fmt.Errorf("ask SLURM for this node's address (or give --node-ip/--interface): %w", err)
	}
	if ip := net.ParseIP(addr); ip != nil {
		return ip.String(), nil // SLURM said so, loopback included
	}
	ips, err := s.Lookup(ctx, addr)
	if err != nil {
		return "", fmt.Errorf("resolve node address %q: %w", addr, err)
	}
	for _, a := range ips {
		if ip := net.ParseIP(a); ip != nil && !ip.IsLoopback() && ip.To4() != nil {
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("node address %q resolves only to loopback %v: give --node-ip or --interface", addr, ips)
}
