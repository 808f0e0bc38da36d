//go:build e2e

package main

import (
	"bufio"
	"context"
	"errors"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
	"github.com/sraybatch/sraybatch/internal/events"
	"github.com/sraybatch/sraybatch/internal/report"
)

// TestE2EReport writes the report of a real cluster (a head, one worker and
// the demo driver on the dev SLURM with the real Ray, taken down after a
// few seconds) and
// renders it in headless Chromium: the DOM has a row per job of the
// cluster, GPU-hours that agree with the jobs' records and with status,
// the CSP, and the page sent no request while it loaded.
func TestE2EReport(t *testing.T) {
	e2eShare(t, 2)
	e := needE2E(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		skipOutsideCI(t, "the end-to-end report test needs Debian's chromium (apt-get install chromium)")
	}
	const name = "e2erep"
	e.mustSray(t, "up", "--name", name, "--gpus-per-node", "1", "--time", "10:00", "--setup", e.setup, "--object-store-mb", "80",
		"--workers", "1", "--wait", "--timeout", "3m")
	t.Cleanup(func() { e.sray(t, "down", "--cluster", name) })
	driver := strings.TrimSpace(e.mustSray(t, "train", "--cluster", name, "--step-seconds", "0.3").stdout)
	// The head observes every few seconds: run until its events say every
	// node joined Ray and Ray allocated the demo's GPUs, and the driver has
	// stepped, which is what the report draws.
	dir := cluster.Dir{Path: filepath.Join(e.home, "clusters", name)}
	waitFor(t, "the head's events show 3 jobs joined and GPUs allocated; 5 driver steps", 60*time.Second, func() bool {
		joined, allocated := headSaw(t, dir)
		return joined == 3 && allocated > 0 && stepsDone(t, dir, driver) >= 5
	})
	before := e.status(t, name)
	statusAt := time.Now()
	e.mustSray(t, "down", "--cluster", name)
	downAt := time.Now()

	page := filepath.Join(e.userDir(t, "report"), name+".html")
	r := e.mustSray(t, "report", "--cluster", name, "-o", page)
	if strings.TrimSpace(r.stdout) != page {
		t.Errorf("report printed %q, want the page's path %s", r.stdout, page)
	}

	proxy := newCountingProxy(t)
	dom := dumpDOM(t, chromium, page, proxy.addr)
	if got := proxy.requests(); len(got) != 0 {
		t.Errorf("the page sent %d requests while it loaded: %q", len(got), got)
	}
	if !strings.Contains(dom, `<meta http-equiv="Content-Security-Policy" content="`+report.CSP+`">`) {
		t.Errorf("the rendered DOM lacks the CSP meta:\n%.600s", dom)
	}

	t.Run("one row per job of the cluster, each ended", func(t *testing.T) {
		var want []string
		for _, j := range before.Jobs {
			want = append(want, j.JobID)
		}
		for _, pattern := range []string{`<tr data-job="([^"]+)" data-role="[^"]+">`, `<g class="job-row" data-job="([^"]+)"`} {
			var got []string
			for _, m := range regexp.MustCompile(pattern).FindAllStringSubmatch(dom, -1) {
				got = append(got, m[1])
			}
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, " ") != strings.Join(want, " ") || len(want) != 3 {
				t.Errorf("rows %q (%s), want the head's, the worker's and the driver's: %q", got, pattern, want)
			}
		}
		for _, j := range before.Jobs {
			row := regexp.MustCompile(`<tr data-job="` + regexp.QuoteMeta(j.JobID) + `"[^>]*>.*?</tr>`).FindString(dom)
			if !strings.Contains(row, `<td class="last-state">ended</td>`) {
				t.Errorf("job %s's row does not say ended: %s", j.JobID, row)
			}
			// The head's job_state events say when each node joined Ray.
			g := regexp.MustCompile(`(?s)<g class="job-row" data-job="` + regexp.QuoteMeta(j.JobID) + `".*?</g>`).FindString(dom)
			if !strings.Contains(g, `class="iv joined"`) {
				t.Errorf("job %s's timeline has no joined interval: %s", j.JobID, g)
			}
		}
	})

	t.Run("GPU-hours agree with the jobs' records and with status", func(t *testing.T) {
		recs, err := dir.Nodes()
		if err != nil {
			t.Fatal(err)
		}
		var fromRecords, low, high float64
		for _, j := range before.Jobs {
			rec, ok := recs[j.JobID]
			if wantGPUs := map[cluster.Role]int{cluster.RoleHead: 1, cluster.RoleWorker: 1, cluster.RoleDriver: 0}[j.Role]; !ok || !rec.Final() || j.GPUs != wantGPUs {
				t.Fatalf("job %s: record %+v (ok %v), %d GPUs; want a final record and the %d GPUs asked for", j.JobID, rec, ok, j.GPUs, wantGPUs)
			}
			ran := rec.Updated.Sub(rec.Started).Seconds()
			fromRecords += float64(j.GPUs) * ran
			// status's elapsed (SLURM's own clock, whole seconds) before down,
			// plus at most the time from that status until down returned.
			low += float64(j.GPUs) * float64(j.ElapsedS-1)
			high += float64(j.GPUs) * (float64(j.ElapsedS+2) + downAt.Sub(statusAt).Seconds())
		}
		slurm := figure(t, dom, "gpu-hours-slurm")
		t.Logf("MEASURED report: SLURM %.1f GPU-s (records %.1f, status %.0f–%.0f), joined %.1f, Ray allocated %.1f",
			slurm, fromRecords, low, high, figure(t, dom, "gpu-hours-joined"), figure(t, dom, "gpu-hours-ray-allocated"))
		if slurm <= 0 || math.Abs(slurm-fromRecords) > 0.01 {
			t.Errorf("SLURM GPU-s %.3f, want %.3f: each job's GPUs × its recorded run time", slurm, fromRecords)
		}
		if slurm < low || slurm > high {
			t.Errorf("SLURM GPU-s %.3f outside %.0f–%.0f, what status's elapsed times allow", slurm, low, high)
		}
		var rows float64
		for _, m := range regexp.MustCompile(`class="num slurm-gpu-hours" data-gpu-seconds="([0-9.]+)"`).FindAllStringSubmatch(dom, -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			rows += v
		}
		if math.Abs(rows-slurm) > 0.01 {
			t.Errorf("the rows' SLURM GPU-s add up to %.3f, the summary says %.3f", rows, slurm)
		}
		joined := figure(t, dom, "gpu-hours-joined")
		if joined <= 0 || joined > slurm {
			t.Errorf("joined GPU-s %.3f, want more than 0 and at most SLURM's %.3f", joined, slurm)
		}
		if allocated := figure(t, dom, "gpu-hours-ray-allocated"); allocated <= 0 || allocated > joined {
			t.Errorf("Ray-allocated GPU-s %.3f, want more than 0 (the demo's actors) and at most joined's %.3f", allocated, joined)
		}
	})

	t.Run("the driver's steps", func(t *testing.T) {
		want := stepsDone(t, dir, driver)
		m := regexp.MustCompile(`<tr data-driver="` + regexp.QuoteMeta(driver) + `"><td>[^<]*</td><td class="num">([0-9]+)</td>`).FindStringSubmatch(dom)
		if m == nil || m[1] != strconv.Itoa(want) {
			t.Errorf("steps row %q, want driver %s's %d step_done events", m, driver, want)
		}
		if !regexp.MustCompile(`<svg id="chart-step-rate"[^>]*>(?s:.*)<polyline class="series steps steps-0" data-series="driver ` + regexp.QuoteMeta(driver) + `" points="[0-9]`).MatchString(dom) {
			t.Errorf("no step-rate line for driver %s", driver)
		}
	})

	t.Run("the proxy sees a page that fetches (control)", func(t *testing.T) {
		control := filepath.Join(t.TempDir(), "control.html")
		if err := os.WriteFile(control, []byte(`<!DOCTYPE html><p>control</p><img src="http://report-probe.invalid/probe.png">`), 0o644); err != nil {
			t.Fatal(err)
		}
		p := newCountingProxy(t)
		dumpDOM(t, chromium, control, p.addr)
		got := p.requests()
		if len(got) == 0 {
			t.Errorf("a page without the CSP that loads an image: the proxy saw no request")
		}
		for _, r := range got {
			if !strings.Contains(r, "report-probe.invalid") {
				t.Errorf("the proxy saw %q, not the page's image: Chromium's own traffic would count as the page's", r)
			}
		}
	})
}

// headSaw counts the jobs the head's job_state events saw joined, and the
// most GPUs its cluster samples saw Ray allocate.
func headSaw(t *testing.T, dir cluster.Dir) (joined int, allocated float64) {
	t.Helper()
	evs, err := events.ReadAll(dir.ClusterEventsPath())
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]bool{}
	for _, ev := range evs {
		var js events.JobState
		var cs events.ClusterSample
		switch {
		case ev.Name == events.NameJobState && ev.Decode(&js) == nil && js.Membership == cluster.MembershipJoined:
			jobs[js.Job] = true
		case ev.Name == events.NameClusterSample && ev.Decode(&cs) == nil:
			allocated = math.Max(allocated, cs.GPUsAllocated)
		}
	}
	return len(jobs), allocated
}

// stepsDone counts a driver's step_done events.
func stepsDone(t *testing.T, dir cluster.Dir, driver string) int {
	t.Helper()
	evs, err := events.ReadAll(dir.EventsPath(driver))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Name == events.NameStepDone {
			n++
		}
	}
	return n
}

// figure reads a summary figure's GPU-seconds from the DOM.
func figure(t *testing.T, dom, id string) float64 {
	t.Helper()
	m := regexp.MustCompile(`id="` + id + `" data-gpu-seconds="([0-9.]+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the DOM has no known figure %s", id)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// countingProxy is an HTTP proxy that answers nothing: it records the first
// line of every connection Chromium opens through it.
type countingProxy struct {
	addr string
	mu   sync.Mutex
	seen []string
}

func newCountingProxy(t *testing.T) *countingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			p.mu.Lock()
			p.seen = append(p.seen, strings.TrimSpace(line))
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *countingProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

// chromiumQuiet are the flags that stop Chromium's own traffic, so that
// every request the proxy sees is the page's. Measured on Debian's chromium
// 156 through the counting proxy: with the first line alone it still sent
// the three requests the other flags name, one each; with all, none.
var chromiumQuiet = []string{
	"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions", "--no-first-run",
	// The Optimization Guide models manifest is fetched on demand even with
	// --disable-component-update; a non-HTTPS update source stops the check.
	"--component-updater=url-source=http://127.0.0.1:1/",
	// clients2.google.com/time/1/current.
	"--disable-features=NetworkTimeServiceQuerying",
	// A CONNECT to accounts.google.com at start-up.
	"--gaia-url=http://127.0.0.1:1/",
}

// dumpDOM renders a file in headless Chromium, every request through
// proxy (loopback too: <-loopback> drops the implicit bypass), and returns
// the DOM once the page has loaded.
func dumpDOM(t *testing.T, chromium, file, proxy string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + t.TempDir(),
		"--proxy-server=" + proxy, "--proxy-bypass-list=<-loopback>"}, chromiumQuiet...)
	args = append(args, "--dump-dom", "file://"+file)
	start := time.Now()
	cmd := exec.CommandContext(ctx, chromium, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || ctx.Err() != nil {
			t.Fatalf("chromium --dump-dom %s: %v (%v)\n%s", file, err, ctx.Err(), logTailOf(stderr.String(), 20))
		}
		t.Fatal(err)
	}
	t.Logf("MEASURED chromium --dump-dom %s: %.1f s", filepath.Base(file), time.Since(start).Seconds())
	return string(out)
}

func logTailOf(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
