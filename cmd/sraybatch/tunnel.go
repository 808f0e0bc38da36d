package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/templates"
)

const tunnelUsage = `Usage: sraybatch tunnel [--cluster NAME] [--login HOST] [--local-port N]

Print the ssh command that forwards a local port to the head's Ray dashboard,
which listens on the head node's localhost only. Run it on your laptop (or on
the login node, without -J), then open http://127.0.0.1:N/. The dashboard asks
for the cluster's token (the file RAY_AUTH_TOKEN_PATH names in sraybatch env).

Examples:
  sraybatch tunnel --cluster exp1 --login login1.example.org
  $(sraybatch tunnel -c exp1 --local-port 8265)`

type tunnelOptions struct {
	Cluster   string
	Login     string
	LocalPort int
}

func runTunnelCmd(ctx context.Context, io IOStreams, args []string) error {
	var o tunnelOptions
	fs := newFlagSet("tunnel", tunnelUsage, io)
	addClusterFlag(fs, &o.Cluster)
	fs.StringVar(&o.Login, "login", "", "the login node ssh jumps through, [user@]host[:port] (default: this host's name)")
	fs.IntVar(&o.LocalPort, "local-port", 0, "local port to forward (default: the dashboard's port)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if o.Login == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("find this host's name (give --login): %w", err)
		}
		o.Login = h
	}
	a, err := newApp()
	if err != nil {
		return err
	}
	return runTunnel(io, a, o)
}

// sshHost is what the printed command may carry unquoted: host names,
// user@host:port, IPv6 in brackets. Nothing that ssh would read as an option.
var sshHost = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@:\[\]%-]*$`)

func runTunnel(io IOStreams, a *app, o tunnelOptions) error {
	if err := templates.SingleLine("--cluster", o.Cluster); err != nil {
		return usageError{err}
	}
	if !sshHost.MatchString(o.Login) {
		return usagef("invalid --login %q: give [user@]host[:port]", o.Login)
	}
	if o.LocalPort < 0 || o.LocalPort > 65535 {
		return usagef("invalid --local-port %d: give 1-65535", o.LocalPort)
	}
	dir, spec, err := a.resolveCluster(o.Cluster)
	if err != nil {
		return err
	}
	if _, down, err := dir.Down(); err != nil {
		return err
	} else if down {
		return fmt.Errorf("cluster %s was taken down: it has no dashboard", spec.Name)
	}
	head, ok, err := dir.Head()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("cluster %s has not published its head yet: wait with `sraybatch up --wait` or check `sraybatch status`", spec.Name)
	}
	if rec, ok, err := dir.Node(head.Job); err == nil && ok && rec.Final() {
		return fmt.Errorf("head job %s of cluster %s has %s (%s): it has no dashboard", head.Job, spec.Name, rec.Phase, rec.Reason)
	}
	port, err := dashboardPort(head)
	if err != nil {
		return err
	}
	if !sshHost.MatchString(head.SlurmNode) {
		return fmt.Errorf("head.json of cluster %s names head node %q, not a host name", spec.Name, head.SlurmNode)
	}
	local := o.LocalPort
	if local == 0 {
		local = port
	}
	printTunnel(io, tunnelPlan{
		Login: o.Login, Node: head.SlurmNode, HeadJob: head.Job, Port: port, Local: local,
		Token: dir.TokenPathOf(head), Insecure: spec.Insecure,
	})
	return nil
}

// dashboardPort reads the port of the head's published dashboard URL, which
// must be on the head's loopback: that is what the tunnel forwards to.
func dashboardPort(h cluster.HeadInfo) (int, error) {
	u, err := url.Parse(h.Dashboard)
	if err != nil || u.Hostname() != "127.0.0.1" {
		return 0, fmt.Errorf("head job %s published dashboard %q, not a 127.0.0.1 address", h.Job, h.Dashboard)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("head job %s published dashboard %q without a port", h.Job, h.Dashboard)
	}
	return port, nil
}

type tunnelPlan struct {
	Login, Node, HeadJob string
	Port, Local          int
	Token                string
	Insecure             bool
}

// printTunnel puts the command alone on stdout, so $(sraybatch tunnel) runs
// it, and what it needs and the alternatives on stderr.
func printTunnel(io IOStreams, p tunnelPlan) {
	fmt.Fprintf(io.Out, "ssh -J %s -L %d:127.0.0.1:%d %s\n", p.Login, p.Local, p.Port, p.Node)
	w := io.ErrOut
	fmt.Fprintf(w, "This needs ssh from %s to compute node %s (on %s itself, leave out -J %s).\n", p.Login, p.Node, p.Login, p.Login)
	fmt.Fprintf(w, "Then open http://127.0.0.1:%d/", p.Local)
	if p.Insecure {
		fmt.Fprintf(w, " -- cluster without Ray auth: anyone who reaches this port can run code as you.\n")
	} else {
		fmt.Fprintf(w, " and give the token in %s.\n", templates.ShellQuote(p.Token))
	}
	fmt.Fprintf(w, "Where ssh to compute nodes is not allowed, work on the head node through its job:\n")
	fmt.Fprintf(w, "  srun --jobid=%s --overlap --pty bash\n", p.HeadJob)
	auth := ""
	if !p.Insecure {
		auth = fmt.Sprintf(`-H "Authorization: Bearer $(cat %s)" `, templates.ShellQuote(p.Token))
	}
	fmt.Fprintf(w, "  curl %shttp://127.0.0.1:%d/api/v0/nodes   # in that shell\n", auth, p.Port)
	fmt.Fprintf(w, "or forward the port back to %s from there, and tunnel to that:\n", p.Login)
	fmt.Fprintf(w, "  srun --jobid=%s --overlap --pty ssh -N -R %d:127.0.0.1:%d %s\n", p.HeadJob, p.Local, p.Port, p.Login)
	fmt.Fprintf(w, "  ssh -N -L %d:127.0.0.1:%d %s   # on your laptop\n", p.Local, p.Local, p.Login)
}
