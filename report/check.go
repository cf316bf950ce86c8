package report

import (
	"errors"
	"fmt"
	"html"
	"regexp"
	"strconv"
	"strings"
)

// CheckPage checks that page, the report's HTML as WriteHTML wrote it or
// as a browser serializes its DOM, shows r: every process, every
// snapshot with every vma and page run, every sample of the timeline,
// every fork, exec and exit, and every memory call, with r's numbers. It
// returns every difference found.
func CheckPage(page string, r *Report) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	eq := func(what string, got map[string]string, key string, want any) {
		w := fmt.Sprint(want)
		if g, ok := got[key]; !ok || html.UnescapeString(g) != w {
			bad("%s: %s is %q in the page, %q in the report", what, key, got[key], w)
		}
	}

	// The run's figures.
	rows := map[string]map[string]string{}
	for _, part := range splitAfter(section(page, `<div id="summary">`, `<h2>`), `<div class="fig"`) {
		a := attrs(part)
		rows[a["key"]] = a
	}
	t := r.Totals
	for _, kv := range []struct {
		key  string
		want any
	}{{"wall_ns", r.WallNS}, {"exit", t.Exit}, {"processes", t.Processes}, {"execs", t.Execs}, {"mem_calls", t.MemCalls}, {"faults", t.Faults}, {"peak_rss", t.PeakRSS}, {"manager_ns", t.ManagerNS}, {"collect_ns", r.CollectNS}} {
		if rows[kv.key] == nil {
			bad("summary: no %s", kv.key)
			continue
		}
		eq("summary", rows[kv.key], "value", kv.want)
	}

	// The processes' table.
	procs := splitAfter(section(page, `<table id="processes">`, `</table>`), `<tr data-pid=`)
	if len(procs) != len(r.Processes) {
		bad("processes: %d rows in the page, %d processes in the report", len(procs), len(r.Processes))
	}
	for i := 0; i < min(len(procs), len(r.Processes)); i++ {
		p, row := r.Processes[i], procs[i]
		what := fmt.Sprintf("process %d", p.PID)
		for _, kv := range []struct {
			class string
			want  any
		}{{"pid", p.PID}, {"parent", p.Parent}, {"name", p.Name}, {"exit", p.Exit}, {"faults", p.Faults}, {"mem-calls", p.MemCalls}} {
			if got := cellText(row, kv.class); got != fmt.Sprint(kv.want) {
				bad("%s: %s is %q in the page, %v in the report", what, kv.class, got, kv.want)
			}
		}
		eq(what+" peak RSS", cellAttrs(row, "peak-rss"), "value", p.PeakRSS)
		eq(what+" start", cellAttrs(row, "start"), "ns", p.StartNS)
		eq(what+" end", cellAttrs(row, "end"), "ns", p.EndNS)
	}

	// The memory calls.
	calls := splitAfter(section(page, `<table id="syscalls">`, `</table>`), `<tr data-name=`)
	if len(calls) != len(r.Syscalls) {
		bad("memory calls: %d rows in the page, %d in the report", len(calls), len(r.Syscalls))
	}
	for i := 0; i < min(len(calls), len(r.Syscalls)); i++ {
		sc, row := r.Syscalls[i], calls[i]
		what := "call " + sc.Name
		for _, kv := range []struct {
			class string
			want  any
		}{{"name", sc.Name}, {"count", sc.Count}, {"errors", sc.Errors}} {
			if got := cellText(row, kv.class); got != fmt.Sprint(kv.want) {
				bad("%s: %s is %q in the page, %v in the report", what, kv.class, got, kv.want)
			}
		}
		eq(what, cellAttrs(row, "total"), "ns", sc.TotalNS)
		eq(what, cellAttrs(row, "max"), "ns", sc.MaxNS)
	}

	// The call sites.
	sites := splitAfter(section(page, `<table id="sites">`, `</table>`), `<tr data-site=`)
	if len(sites) != len(r.Sites) {
		bad("call sites: %d rows in the page, %d in the report", len(sites), len(r.Sites))
	}
	for i := 0; i < min(len(sites), len(r.Sites)); i++ {
		st, row := r.Sites[i], sites[i]
		what := fmt.Sprintf("site %d", i)
		for _, kv := range []struct {
			class string
			want  any
		}{{"name", st.Name}, {"where", st.Where}, {"caller", st.Caller}, {"count", st.Count}, {"errors", st.Errors}} {
			if got := cellText(row, kv.class); got != fmt.Sprint(kv.want) {
				bad("%s: %s is %q in the page, %v in the report", what, kv.class, got, kv.want)
			}
		}
		eq(what, cellAttrs(row, "total"), "ns", st.TotalNS)
	}

	// The timeline: the totals' group and each process's.
	groups := map[string][]map[string]string{}
	for _, part := range splitAfter(page, `<g class="tl-group"`) {
		proc := attrs(part)["proc"]
		for _, s := range splitAfter(part, `<rect class="sample"`) {
			groups[proc] = append(groups[proc], attrs(s))
		}
	}
	all := groups["all"]
	if len(all) != len(r.Samples) {
		bad("timeline: %d samples in the page, %d in the report", len(all), len(r.Samples))
	}
	perProc := map[string]int{}
	for i, s := range r.Samples {
		if i < len(all) {
			what := fmt.Sprintf("sample %d", i)
			eq(what, all[i], "t-ns", s.TNS)
			eq(what, all[i], "vm-size", s.VmSize)
			eq(what, all[i], "rss", s.RSS)
			eq(what, all[i], "locked", s.Locked)
			eq(what, all[i], "mem-file", s.MemFile)
			eq(what, all[i], "faults", s.Faults)
		}
		for _, ps := range s.Procs {
			pid := strconv.Itoa(ps.PID)
			j := perProc[pid]
			perProc[pid]++
			g := groups[pid]
			if j >= len(g) {
				bad("timeline of %s: no sample %d in the page", pid, j)
				continue
			}
			what := fmt.Sprintf("sample %d of %s", j, pid)
			eq(what, g[j], "t-ns", s.TNS)
			eq(what, g[j], "vm-size", ps.VmSize)
			eq(what, g[j], "rss", ps.RSS)
			eq(what, g[j], "locked", ps.Locked)
			eq(what, g[j], "faults", ps.Faults)
		}
	}
	for pid, g := range groups {
		if pid != "all" && len(g) != perProc[pid] {
			bad("timeline of %s: %d samples in the page, %d in the report", pid, len(g), perProc[pid])
		}
	}
	marks := splitAfter(page, `<g class="marker `)
	if len(marks) != len(r.Events) {
		bad("timeline: %d markers in the page, %d events in the report", len(marks), len(r.Events))
	}
	for i := 0; i < min(len(marks), len(r.Events)); i++ {
		e, a := r.Events[i], attrs(marks[i])
		what := fmt.Sprintf("event %d", i)
		eq(what, a, "kind", e.Kind)
		eq(what, a, "pid", e.PID)
		eq(what, a, "child", e.Child)
		eq(what, a, "t-ns", e.TNS)
	}

	// The address spaces.
	var want []*Snapshot
	var owner []int
	for _, p := range r.Processes {
		for i := range p.Snapshots {
			want = append(want, &p.Snapshots[i])
			owner = append(owner, p.PID)
		}
	}
	snaps := splitAfter(page, `<div class="snap"`)
	if len(snaps) != len(want) {
		bad("address spaces: %d snapshots in the page, %d in the report", len(snaps), len(want))
	}
	for i := 0; i < min(len(snaps), len(want)); i++ {
		sn, part := want[i], snaps[i]
		a := attrs(part)
		what := fmt.Sprintf("snapshot %d of %d", i, owner[i])
		eq(what, a, "pid", owner[i])
		eq(what, a, "why", sn.Why)
		eq(what, a, "t-ns", sn.TNS)
		figs := map[string]string{}
		for _, s := range splitAfter(section(part, `<p class="snap-sum">`, `</p>`), `<span `) {
			sa := attrs(s)
			figs[sa["key"]] = sa["value"]
		}
		for _, kv := range []struct {
			key  string
			want uint64
		}{{"vm_size", sn.VmSize}, {"rss", sn.RSS}, {"shared", sn.Shared}, {"locked", sn.Locked}, {"guard", sn.Guard}} {
			eq(what, figs, kv.key, kv.want)
		}
		// A clicked vma's class is "vma sel".
		vmas := splitAfter(part, `<g class="vma`)
		if len(vmas) != len(sn.VMAs) {
			bad("%s: %d vmas in the page, %d in the report", what, len(vmas), len(sn.VMAs))
		}
		for j := 0; j < min(len(vmas), len(sn.VMAs)); j++ {
			v, va := &sn.VMAs[j], attrs(vmas[j])
			vw := fmt.Sprintf("%s, vma %#x", what, v.Start)
			for _, kv := range []struct {
				key  string
				want any
			}{{"start", v.Start}, {"end", v.End}, {"perms", v.Perms}, {"offset", v.Offset}, {"dev", v.Dev}, {"inode", v.Inode},
				{"name", v.Name}, {"kind", v.Kind}, {"mm-kind", v.MMKind}, {"flags", strings.Join(v.Flags, " ")},
				{"rss", v.Rss}, {"pss", v.Pss}, {"shared-clean", v.SharedClean}, {"shared-dirty", v.SharedDirty},
				{"private-dirty", v.PrivateDirty}, {"anonymous", v.Anonymous}, {"locked", v.Locked}, {"shared", v.Shared}, {"guard", v.Guard}} {
				eq(vw, va, kv.key, kv.want)
			}
			body := vmas[j][:max(strings.Index(vmas[j], "</g>"), 0)]
			runs := splitAfter(body, `<rect class="run `)
			drawn := drawnRuns(v)
			if len(runs) != len(drawn) {
				bad("%s: %d page runs in the page, %d in the report (%d as drawn)", vw, len(runs), len(v.Runs), len(drawn))
				continue
			}
			for k, run := range drawn {
				ra := attrs(runs[k])
				rw := fmt.Sprintf("%s, run %d", vw, k)
				if state, _, _ := strings.Cut(runs[k], `"`); state != run.State {
					bad("%s: state %q in the page, %q in the report", rw, state, run.State)
				}
				eq(rw, ra, "start", run.Start)
				eq(rw, ra, "end", run.End)
			}
		}
	}
	return errors.Join(errs...)
}

var attrRE = regexp.MustCompile(`data-([a-z-]+)="([^"]*)"`)

// attrs returns the data attributes of the tag that s starts in.
func attrs(s string) map[string]string {
	if i := strings.IndexByte(s, '>'); i >= 0 {
		s = s[:i]
	}
	m := map[string]string{}
	for _, a := range attrRE.FindAllStringSubmatch(s, -1) {
		m[a[1]] = a[2]
	}
	return m
}

// section returns the part of page from open to the first close after it.
func section(page, open, close string) string {
	i := strings.Index(page, open)
	if i < 0 {
		return ""
	}
	rest := page[i:]
	if j := strings.Index(rest, close); j >= 0 {
		return rest[:j]
	}
	return rest
}

// splitAfter returns the parts of s that follow each occurrence of sep,
// each running to the next.
func splitAfter(s, sep string) []string {
	parts := strings.Split(s, sep)
	return parts[1:]
}

var cellRE = regexp.MustCompile(`<td class="([a-z-]+)"([^>]*)>(.*?)</td>`)

// cells returns the cells of a table row by class: their attributes and
// their text (without tags, unescaped).
func cells(row string) map[string][2]string {
	if i := strings.Index(row, "</tr>"); i >= 0 {
		row = row[:i]
	}
	m := map[string][2]string{}
	for _, c := range cellRE.FindAllStringSubmatch(row, -1) {
		m[c[1]] = [2]string{c[2], html.UnescapeString(tagRE.ReplaceAllString(c[3], ""))}
	}
	return m
}

var tagRE = regexp.MustCompile(`<[^>]*>`)

// cellText returns the text of the cell of class in row.
func cellText(row, class string) string { return cells(row)[class][1] }

// cellAttrs returns the data attributes of the cell of class in row.
func cellAttrs(row, class string) map[string]string { return attrs(cells(row)[class][0]) }
