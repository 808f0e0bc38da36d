package raynode

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

func slurmSays(addr string, err error) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return addr, err }
}

func resolvesTo(host string, ips ...string) func(context.Context, string) ([]string, error) {
	return func(_ context.Context, h string) ([]string, error) {
		if h != host {
			return nil, &net.DNSError{Err: "no such host", Name: h, IsNotFound: true}
		}
		return ips, nil
	}
}

func ifaceAddrs(addrs ...string) func(string) ([]net.Addr, error) {
	return func(name string) ([]net.Addr, error) {
		if name != "ib0" {
			return nil, errors.New("route ip+net: no such network interface")
		}
		var out []net.Addr
		for _, a := range addrs {
			ip, ipn, err := net.ParseCIDR(a)
			if err != nil {
				panic(err)
			}
			ipn.IP = ip
			out = append(out, ipn)
		}
		return out, nil
	}
}

func TestNodeIPSourceChoose(t *testing.T) {
	t.Parallel()
	errSlurm := errors.New("scontrol failed: slurm_load_node error")
	mustNotAsk := func(context.Context) (string, error) {
		panic("SLURM asked although an override was given")
	}
	tests := []struct {
		name    string
		src     NodeIPSource
		want    string
		wantErr string
	}{
		{"override", NodeIPSource{Override: "10.9.9.9", SlurmAddr: mustNotAsk}, "10.9.9.9", ""},
		{"override ipv6", NodeIPSource{Override: "fd00::5"}, "fd00::5", ""},
		{"invalid override", NodeIPSource{Override: "node1", SlurmAddr: mustNotAsk}, "", `invalid --node-ip "node1"`},
		{"interface", NodeIPSource{Interface: "ib0", InterfaceAddrs: ifaceAddrs("fe80::1/64", "192.168.7.9/24"), SlurmAddr: mustNotAsk}, "192.168.7.9", ""},
		{"interface without ipv4", NodeIPSource{Interface: "ib0", InterfaceAddrs: ifaceAddrs("fe80::1/64")}, "", `interface "ib0" has no IPv4 address`},
		{"unknown interface", NodeIPSource{Interface: "eth9", InterfaceAddrs: ifaceAddrs()}, "", `interface "eth9": route ip+net`},
		{"outside slurm", NodeIPSource{}, "", "not in a SLURM job"},
		{"slurm gives an address", NodeIPSource{SlurmAddr: slurmSays("10.1.2.3", nil)}, "10.1.2.3", ""},
		{"slurm says loopback", NodeIPSource{SlurmAddr: slurmSays("127.0.0.12", nil)}, "127.0.0.12", ""},
		{"slurm host name", NodeIPSource{SlurmAddr: slurmSays("gpu01", nil), Lookup: resolvesTo("gpu01", "127.0.1.1", "10.1.2.3")}, "10.1.2.3", ""},
		{"host name, ipv6 first", NodeIPSource{SlurmAddr: slurmSays("gpu01", nil), Lookup: resolvesTo("gpu01", "::1", "fd00::3", "10.1.2.3")}, "10.1.2.3", ""},
		{"host name only loopback", NodeIPSource{SlurmAddr: slurmSays("gpu01", nil), Lookup: resolvesTo("gpu01", "127.0.1.1", "::1")}, "", `node address "gpu01" resolves only to loopback`},
		{"host name unknown", NodeIPSource{SlurmAddr: slurmSays("gpu02", nil), Lookup: resolvesTo("gpu01")}, "", `resolve node address "gpu02"`},
		{"slurm error", NodeIPSource{SlurmAddr: slurmSays("", errSlurm)}, "", "ask SLURM for this node's address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.src.Choose(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Choose() = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Choose() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestNodeIPSourceWrapsSLURMError(t *testing.T) {
	t.Parallel()
	errSlurm := errors.New("scontrol failed")
	_, err := NodeIPSource{SlurmAddr: slurmSays("", errSlurm)}.Choose(context.Background())
	if !errors.Is(err, errSlurm) {
		t.Errorf("Choose() = %v, want it to wrap SLURM's error", err)
	}
}
