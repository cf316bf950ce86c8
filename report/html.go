package report

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// kindColors are the colours of the kinds of vma (Kinds).
var kindColors = map[string]string{
	"text":      "#4e79a7",
	"data":      "#59a14f",
	"heap":      "#f28e2b",
	"stack":     "#e15759",
	"file":      "#76b7b2",
	"shared":    "#b07aa1",
	"anonymous": "#d4a92a",
	"special":   "#9c755f",
}

// seriesColors are the colours of the timeline's lines.
var seriesColors = map[string]string{
	"vm_size":  "#4e79a7",
	"rss":      "#e15759",
	"locked":   "#222222",
	"mem_file": "#59a14f",
}

// Sizes of the drawing, in pixels.
const (
	// The address-space map: the address column, the bar, the labels.
	mapAddrW = 150
	mapBarX  = 160
	mapBarW  = 400
	mapTextX = mapBarX + mapBarW + 12
	mapW     = 1200
	// The timeline: the plot's left edge and width, the memory plot's
	// top and height, the faults plot's top and height.
	tlX, tlW      = 70, 860
	tlMemY, tlMem = 24, 190
	tlFltY, tlFlt = 240, 60
	tlH           = 330
)

// WriteHTML writes r as one self-contained HTML page.
func (r *Report) WriteHTML(w io.Writer) error {
	bw := bufio.NewWriter(w)
	h := &htmlWriter{w: bw, r: r}
	h.page()
	return bw.Flush()
}

// htmlWriter writes the page of a report.
type htmlWriter struct {
	w *bufio.Writer
	r *Report
}

// p writes formatted text.
func (h *htmlWriter) p(format string, args ...any) { fmt.Fprintf(h.w, format, args...) }

// s writes text as it is.
func (h *htmlWriter) s(text string) { h.w.WriteString(text) }

// esc escapes text for HTML.
func esc(s string) string { return html.EscapeString(s) }

// Size formats a byte count with a binary unit ("4 KiB", "1.5 MiB",
// "128 TiB").
func Size(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	i := -1
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if f == math.Trunc(f) {
		return fmt.Sprintf("%.0f %ciB", f, units[i])
	}
	return fmt.Sprintf("%.1f %ciB", f, units[i])
}

// Duration formats nanoseconds for the page ("12.3 ms").
func Duration(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", ns)
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(ns)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(ns)/1e6)
	}
	return fmt.Sprintf("%.2f s", float64(ns)/1e9)
}

func (h *htmlWriter) page() {
	r := h.r
	title := "vmspace report"
	if len(r.Command) > 0 {
		title += ": " + strings.Join(r.Command, " ")
	}
	h.p("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n", esc(title), pageCSS)
	h.defs()
	h.p("<h1>vmspace report</h1>\n<p class=\"cmd\"><code id=\"command\">%s</code> &middot; started %s</p>\n",
		esc(strings.Join(r.Command, " ")), esc(r.Started.UTC().Format(time.RFC3339)))
	h.summary()
	h.timeline()
	h.s("<div class=\"tables\"><section>\n")
	h.processes()
	h.s("</section><section>\n")
	h.syscalls()
	h.s("</section></div>\n")
	h.sites()
	h.spaces()
	h.p("<aside id=\"smaps-panel\"><div class=\"panel-head\">smaps entry <span class=\"hint\">(hover or click a vma)</span></div><pre id=\"smaps\"></pre></aside>\n")
	h.p("<script>%s</script>\n</body>\n</html>\n", pageJS)
}

// defs writes the patterns that mark copy-on-write shared and guard pages.
func (h *htmlWriter) defs() {
	h.s(`<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>
<pattern id="pat-shared" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#333"/><rect width="3" height="6" fill="#fff"/></pattern>
<pattern id="pat-guard" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="#c00"/><path d="M0 0L6 6M6 0L0 6" stroke="#000" stroke-width="1.5"/></pattern>
</defs></svg>
`)
}

// summary writes the run's figures.
func (h *htmlWriter) summary() {
	t := h.r.Totals
	h.s("<div id=\"summary\">\n")
	row := func(key, label, value string, raw any) {
		h.p("<div class=\"fig\" data-key=\"%s\" data-value=\"%v\"><b>%s</b><span>%s</span></div>\n", key, raw, esc(value), label)
	}
	row("wall_ns", "run time", Duration(h.r.WallNS), h.r.WallNS)
	row("exit", "the program", t.Exit, esc(t.Exit))
	row("processes", "processes", strconv.Itoa(t.Processes), t.Processes)
	row("execs", "program images", strconv.Itoa(t.Execs), t.Execs)
	row("mem_calls", "memory calls", strconv.FormatUint(t.MemCalls, 10), t.MemCalls)
	row("faults", "page faults", strconv.FormatUint(t.Faults, 10), t.Faults)
	row("peak_rss", "peak RSS", Size(t.PeakRSS), t.PeakRSS)
	row("manager_ns", "time in vmspace", Duration(t.ManagerNS), t.ManagerNS)
	row("collect_ns", "taking this report", Duration(h.r.CollectNS), h.r.CollectNS)
	h.s("</div>\n")
}

// end returns the time the timeline spans.
func (r *Report) end() int64 {
	t := r.WallNS
	if n := len(r.Samples); n > 0 {
		t = max(t, r.Samples[n-1].TNS)
	}
	if n := len(r.Events); n > 0 {
		t = max(t, r.Events[n-1].TNS)
	}
	return max(t, 1)
}

// series are one group of the timeline: the totals or one process's.
type series struct {
	// proc is "all" or a pid.
	proc string
	// t are the sample times; vm, rss, locked, memFile and faults the
	// figures (memFile only for the totals).
	t                               []int64
	vm, rss, locked, memFile, fault []uint64
}

// timeline writes the timeline: one group for the totals, one for each
// process, of which the script shows the one selected.
func (h *htmlWriter) timeline() {
	r := h.r
	h.s("<h2>Timeline</h2>\n<section id=\"timeline\">\n<label>show <select id=\"tl-proc\"><option value=\"all\">all processes</option>")
	for _, p := range r.Processes {
		h.p("<option value=\"%d\">%d %s</option>", p.PID, p.PID, esc(p.Name))
	}
	h.s("</select></label> <span id=\"tl-readout\" class=\"readout\">hover the chart for the figures of an interval</span>\n")
	end := r.end()
	x := func(t int64) float64 { return tlX + float64(tlW)*float64(t)/float64(end) }
	h.p("<svg id=\"tl-svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" data-end-ns=\"%d\">\n", tlX+tlW+60, tlH, tlX+tlW+60, tlH, end)
	// Time axis.
	h.p("<g class=\"axis\"><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>", tlX, tlFltY+tlFlt, tlX+tlW, tlFltY+tlFlt)
	for i := 0; i <= 4; i++ {
		t := end * int64(i) / 4
		h.p("<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>", x(t), tlFltY+tlFlt+16, Duration(t))
	}
	h.p("<text x=\"8\" y=\"%d\">faults</text></g>\n", tlFltY+tlFlt/2)
	all := series{proc: "all"}
	byPID := map[int]*series{}
	var pids []int
	for _, s := range r.Samples {
		all.t = append(all.t, s.TNS)
		all.vm = append(all.vm, s.VmSize)
		all.rss = append(all.rss, s.RSS)
		all.locked = append(all.locked, s.Locked)
		all.memFile = append(all.memFile, s.MemFile)
		all.fault = append(all.fault, s.Faults)
		for _, ps := range s.Procs {
			g := byPID[ps.PID]
			if g == nil {
				g = &series{proc: strconv.Itoa(ps.PID)}
				byPID[ps.PID] = g
				pids = append(pids, ps.PID)
			}
			g.t = append(g.t, s.TNS)
			g.vm = append(g.vm, ps.VmSize)
			g.rss = append(g.rss, ps.RSS)
			g.locked = append(g.locked, ps.Locked)
			g.fault = append(g.fault, ps.Faults)
		}
	}
	slices.Sort(pids)
	h.series(&all, x, true)
	for _, pid := range pids {
		h.series(byPID[pid], x, false)
	}
	// Markers for forks, execs and exits.
	h.s("<g class=\"markers\">")
	for _, e := range r.Events {
		what := fmt.Sprintf("%s of %d", e.Kind, e.PID)
		switch {
		case e.Kind == "fork":
			what = fmt.Sprintf("%d forks %d", e.PID, e.Child)
		case e.Detail != "":
			what += ": " + e.Detail
		}
		h.p("<g class=\"marker %s\" data-kind=\"%s\" data-pid=\"%d\" data-child=\"%d\" data-t-ns=\"%d\"><title>%s at %s</title><line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/><text x=\"%.1f\" y=\"%d\">%s</text></g>",
			e.Kind, e.Kind, e.PID, e.Child, e.TNS, esc(what), Duration(e.TNS), x(e.TNS), tlMemY-8, x(e.TNS), tlFltY+tlFlt, x(e.TNS), tlMemY-10, markerLetter(e.Kind))
	}
	h.s("</g>\n</svg>\n<div class=\"legend\">")
	for _, k := range []struct{ key, label string }{{"vm_size", "VmSize"}, {"rss", "RSS"}, {"locked", "locked"}, {"mem_file", "memory file (all processes)"}} {
		h.p("<span><i style=\"background:%s\"></i>%s</span>", seriesColors[k.key], k.label)
	}
	h.s("<span><i style=\"background:#999\"></i>faults per interval</span><span class=\"mk fork\">F</span> fork <span class=\"mk exec\">E</span> exec <span class=\"mk exit\">X</span> exit</div>\n</section>\n")
}

// markerLetter is the letter above an event's marker.
func markerLetter(kind string) string {
	switch kind {
	case "fork":
		return "F"
	case "exec":
		return "E"
	}
	return "X"
}

// series writes one group of the timeline.
func (h *htmlWriter) series(g *series, x func(int64) float64, shown bool) {
	style := ""
	if !shown {
		style = " style=\"display:none\""
	}
	h.p("<g class=\"tl-group\" data-proc=\"%s\"%s>", g.proc, style)
	var top, ftop uint64 = 1, 1
	for i := range g.t {
		top = max(top, g.vm[i], g.rss[i])
		if g.memFile != nil {
			top = max(top, g.memFile[i])
		}
		ftop = max(ftop, g.fault[i])
	}
	y := func(v uint64) float64 { return tlMemY + tlMem - float64(tlMem)*float64(v)/float64(top) }
	// The memory axis.
	h.p("<g class=\"axis\"><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>", tlX, tlMemY, tlX, tlMemY+tlMem)
	for _, v := range []uint64{0, top / 2, top} {
		h.p("<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text><line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>", tlX-4, y(v)+4, Size(v), tlX, y(v), tlX+tlW, y(v))
	}
	h.p("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text></g>", tlX-4, tlFltY+8, ftop)
	line := func(key string, vs []uint64) {
		if len(vs) == 0 {
			return
		}
		var b strings.Builder
		for i, v := range vs {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(g.t[i]), y(v))
		}
		h.p("<polyline class=\"line\" data-series=\"%s\" stroke=\"%s\" points=\"%s\"/>", key, seriesColors[key], strings.TrimSpace(b.String()))
	}
	line("vm_size", g.vm)
	line("rss", g.rss)
	line("locked", g.locked)
	line("mem_file", g.memFile)
	// Faults per interval, and the columns that hold each sample's
	// figures (the script shows them on hover).
	for i := range g.t {
		x0 := x(0)
		if i > 0 {
			x0 = x(g.t[i-1])
		}
		w := max(x(g.t[i])-x0, 1)
		if g.fault[i] > 0 {
			fh := float64(tlFlt) * float64(g.fault[i]) / float64(ftop)
			h.p("<rect class=\"faults\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>", x0, tlFltY+tlFlt-fh, w, fh)
		}
		mf := ""
		if g.memFile != nil {
			mf = fmt.Sprintf(" data-mem-file=\"%d\"", g.memFile[i])
		}
		h.p("<rect class=\"sample\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" data-t-ns=\"%d\" data-vm-size=\"%d\" data-rss=\"%d\" data-locked=\"%d\" data-faults=\"%d\"%s/>",
			x0, tlMemY, w, tlFltY+tlFlt-tlMemY, g.t[i], g.vm[i], g.rss[i], g.locked[i], g.fault[i], mf)
	}
	h.s("</g>\n")
}

// syscalls writes the table of memory system calls.
func (h *htmlWriter) syscalls() {
	h.s("<h2>Memory system calls</h2>\n<table id=\"syscalls\"><thead><tr><th>call</th><th>count</th><th>errors</th><th>time in vmspace</th><th>mean</th><th>max</th><th>share of the time</th></tr></thead><tbody>\n")
	var total int64
	for _, sc := range h.r.Syscalls {
		total += sc.TotalNS
	}
	for _, sc := range h.r.Syscalls {
		share := 0.0
		if total > 0 {
			share = 100 * float64(sc.TotalNS) / float64(total)
		}
		h.p("<tr data-name=\"%s\"><td class=\"name\">%s</td><td class=\"count\">%d</td><td class=\"errors\">%d</td><td class=\"total\" data-ns=\"%d\">%s</td><td>%s</td><td class=\"max\" data-ns=\"%d\">%s</td><td><span class=\"bar\" style=\"width:%.0fpx\"></span> %.1f%%</td></tr>\n",
			esc(sc.Name), esc(sc.Name), sc.Count, sc.Errors, sc.TotalNS, Duration(sc.TotalNS), Duration(sc.TotalNS/int64(max(sc.Count, 1))), sc.MaxNS, Duration(sc.MaxNS), 2*share, share)
	}
	if len(h.r.Syscalls) == 0 {
		h.s("<tr><td colspan=\"7\">no memory system calls</td></tr>\n")
	}
	h.s("</tbody></table>\n")
}

// sites writes the table of call sites.
func (h *htmlWriter) sites() {
	h.s("<h2>Where the memory calls come from</h2>\n<table id=\"sites\"><thead><tr><th>call</th><th>made at</th><th>called from</th><th>count</th><th>errors</th><th>time in vmspace</th></tr></thead><tbody>\n")
	for i, st := range h.r.Sites {
		h.p("<tr data-site=\"%d\"><td class=\"name\">%s</td><td class=\"where\"><code>%s</code></td><td class=\"caller\"><code>%s</code></td><td class=\"count\">%d</td><td class=\"errors\">%d</td><td class=\"total\" data-ns=\"%d\">%s</td></tr>\n",
			i, esc(st.Name), esc(st.Where), esc(st.Caller), st.Count, st.Errors, st.TotalNS, Duration(st.TotalNS))
	}
	if len(h.r.Sites) == 0 {
		h.s("<tr><td colspan=\"6\">no call sites</td></tr>\n")
	}
	h.s("</tbody></table>\n")
}

// processes writes the table of processes.
func (h *htmlWriter) processes() {
	h.s("<h2>Processes</h2>\n<table id=\"processes\"><thead><tr><th>pid</th><th>parent</th><th>program</th><th>started</th><th>ended</th><th>how</th><th>peak RSS</th><th>faults</th><th>memory calls</th></tr></thead><tbody>\n")
	for _, p := range h.r.Processes {
		ended := "running"
		if p.EndNS >= 0 {
			ended = Duration(p.EndNS)
		}
		h.p("<tr data-pid=\"%d\"><td class=\"pid\"><a href=\"#space-%d\">%d</a></td><td class=\"parent\">%d</td><td class=\"name\">%s</td><td class=\"start\" data-ns=\"%d\">%s</td><td class=\"end\" data-ns=\"%d\">%s</td><td class=\"exit\">%s</td><td class=\"peak-rss\" data-value=\"%d\">%s</td><td class=\"faults\">%d</td><td class=\"mem-calls\">%d</td></tr>\n",
			p.PID, p.PID, p.PID, p.Parent, esc(p.Name), p.StartNS, Duration(p.StartNS), p.EndNS, ended, esc(p.Exit), p.PeakRSS, Size(p.PeakRSS), p.Faults, p.MemCalls)
	}
	h.s("</tbody></table>\n")
}

// spaces writes the address-space map of every process's snapshots.
func (h *htmlWriter) spaces() {
	h.s("<h2>Address spaces</h2>\n<div class=\"legend\">")
	for _, k := range Kinds {
		h.p("<span><i style=\"background:%s\"></i>%s</span>", kindColors[k], k)
	}
	h.s("<span><i class=\"faint\"></i>mapped, not resident</span><span><i class=\"pat-shared\"></i>shared copy-on-write</span><span><i class=\"pat-guard\"></i>guard pages</span><span><i style=\"background:#222\"></i>locked (left stripe)</span></div>\n")
	h.s("<p class=\"note\">Each vma and each gap between vmas is a row whose height grows with the logarithm of its size; within a row, pages are drawn to scale.</p>\n")
	for _, p := range h.r.Processes {
		h.p("<section class=\"space\" id=\"space-%d\" data-pid=\"%d\">\n<h3>%d %s</h3>\n", p.PID, p.PID, p.PID, esc(p.Name))
		if len(p.Snapshots) == 0 {
			h.s("<p>no address space was taken</p>\n</section>\n")
			continue
		}
		h.s("<div class=\"snaps\">")
		for i, sn := range p.Snapshots {
			cls := "snap-btn"
			if i == len(p.Snapshots)-1 {
				cls += " on"
			}
			h.p("<button class=\"%s\" data-index=\"%d\">at %s, %s</button>", cls, i, esc(sn.Why), Duration(sn.TNS))
		}
		h.s("</div>\n")
		for i := range p.Snapshots {
			h.snapshot(p, i)
		}
		h.s("</section>\n")
	}
}

// logPages is log2 of a size in pages (at least 0).
func logPages(n uint64) float64 { return math.Log2(float64(max(n/4096, 1))) }

// vmaHeight and gapHeight are the heights of the rows of a vma and a gap
// of n bytes.
func vmaHeight(n uint64) float64 { return 14 + 1.25*logPages(n) }
func gapHeight(n uint64) float64 { return 3 + 0.8*logPages(n) }

// snapshot writes snapshot i of p.
func (h *htmlWriter) snapshot(p *Process, i int) {
	sn := &p.Snapshots[i]
	style := ""
	if i != len(p.Snapshots)-1 {
		style = " style=\"display:none\""
	}
	h.p("<div class=\"snap\" data-pid=\"%d\" data-index=\"%d\" data-why=\"%s\" data-t-ns=\"%d\"%s>\n", p.PID, i, esc(sn.Why), sn.TNS, style)
	h.p("<p class=\"snap-sum\">%s &middot; <span data-key=\"vm_size\" data-value=\"%d\">VmSize %s</span> &middot; <span data-key=\"rss\" data-value=\"%d\">RSS %s</span> &middot; <span data-key=\"shared\" data-value=\"%d\">shared copy-on-write %s</span> &middot; <span data-key=\"locked\" data-value=\"%d\">locked %s</span> &middot; <span data-key=\"guard\" data-value=\"%d\">guard %s</span> &middot; %d vmas</p>\n",
		esc(sn.Image), sn.VmSize, Size(sn.VmSize), sn.RSS, Size(sn.RSS), sn.Shared, Size(sn.Shared), sn.Locked, Size(sn.Locked), sn.Guard, Size(sn.Guard), len(sn.VMAs))
	// Lay the rows out first: the SVG's height is their sum.
	type row struct {
		y, h float64
		gap  bool
		s, e uint64
		v    *VMA
	}
	var rows []row
	y := 4.0
	var prev uint64
	for j := range sn.VMAs {
		v := &sn.VMAs[j]
		if v.Start > prev {
			gh := gapHeight(v.Start - prev)
			rows = append(rows, row{y: y, h: gh, gap: true, s: prev, e: v.Start})
			y += gh
		}
		vh := vmaHeight(v.End - v.Start)
		rows = append(rows, row{y: y, h: vh, s: v.Start, e: v.End, v: v})
		y += vh
		prev = v.End
	}
	h.p("<svg class=\"map\" width=\"%d\" height=\"%.0f\" viewBox=\"0 0 %d %.0f\">\n", mapW, y+4, mapW, y+4)
	for _, rw := range rows {
		if rw.gap {
			n := rw.e - rw.s
			h.p("<g class=\"gap\" data-start=\"%d\" data-end=\"%d\"><title>unmapped: %s (%#x-%#x)</title><rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\"/>", rw.s, rw.e, Size(n), rw.s, rw.e, mapBarX, rw.y, mapBarW, rw.h)
			if rw.h >= 9 {
				h.p("<text class=\"gap-label\" x=\"%d\" y=\"%.1f\">%s gap</text>", mapTextX, rw.y+rw.h/2+4, Size(n))
			}
			h.s("</g>\n")
			continue
		}
		h.vmaRow(rw.v, rw.y, rw.h)
	}
	h.s("</svg>\n</div>\n")
}

// vmaRow writes the row of v at y, h high.
func (h *htmlWriter) vmaRow(v *VMA, y, rh float64) {
	size := v.End - v.Start
	color := kindColors[v.Kind]
	locked := v.Locked > 0 || slices.Contains(v.Flags, "lo")
	h.p("<g class=\"vma\" tabindex=\"0\" data-start=\"%d\" data-end=\"%d\" data-perms=\"%s\" data-offset=\"%d\" data-dev=\"%s\" data-inode=\"%d\" data-name=\"%s\" data-kind=\"%s\" data-mm-kind=\"%s\" data-flags=\"%s\" data-rss=\"%d\" data-pss=\"%d\" data-shared-clean=\"%d\" data-shared-dirty=\"%d\" data-private-dirty=\"%d\" data-anonymous=\"%d\" data-locked=\"%d\" data-shared=\"%d\" data-guard=\"%d\">",
		v.Start, v.End, esc(v.Perms), v.Offset, esc(v.Dev), v.Inode, esc(v.Name), v.Kind, esc(v.MMKind), esc(strings.Join(v.Flags, " ")),
		v.Rss, v.Pss, v.SharedClean, v.SharedDirty, v.PrivateDirty, v.Anonymous, v.Locked, v.Shared, v.Guard)
	h.p("<title>%#x-%#x %s %s %s, %s resident%s</title>", v.Start, v.End, esc(v.Perms), esc(v.Name), Size(size), Size(v.Rss), lockedWord(locked))
	h.p("<text class=\"addr\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%#x</text>", mapAddrW, y+11, v.Start)
	h.p("<rect class=\"bg\" x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\"/>", mapBarX, y+1, mapBarW, rh-2, color)
	px := func(a uint64) float64 { return mapBarX + float64(mapBarW)*float64(a-v.Start)/float64(size) }
	for _, run := range drawnRuns(v) {
		x0 := px(run.Start)
		w := max(px(run.End)-x0, 1)
		fill := color
		switch run.State {
		case "shared":
			fill = "url(#pat-shared)"
		case "guard":
			fill = "url(#pat-guard)"
			w = max(w, 3)
		}
		h.p("<rect class=\"run %s\" data-start=\"%d\" data-end=\"%d\" x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\"/>", run.State, run.Start, run.End, x0, y+1, w, rh-2, fill)
	}
	if locked {
		h.p("<rect class=\"locked\" x=\"%d\" y=\"%.1f\" width=\"5\" height=\"%.1f\"/>", mapBarX-7, y+1, rh-2)
	}
	label := fmt.Sprintf("%s %s", v.Perms, Size(size))
	if v.Rss > 0 {
		label += " · rss " + Size(v.Rss)
	}
	if v.Shared > 0 {
		label += " · cow " + Size(v.Shared)
	}
	if v.Guard > 0 {
		label += " · guard " + Size(v.Guard)
	}
	if locked {
		label += " · locked"
	}
	name := v.Name
	if name == "" {
		name = "[" + v.Kind + "]"
	}
	h.p("<text class=\"label\" x=\"%d\" y=\"%.1f\">%s <tspan class=\"vname\">%s</tspan></text></g>\n", mapTextX, y+11, esc(label), esc(name))
}

// drawnRuns returns the page runs of v as its bar draws them: all of them
// when there are at most mapBarW, else one run per stretch of the bar's
// mapBarW columns that show the same state. A column shows the strongest
// state of the pages in it: guard, then shared, then resident (a guard
// page or a page shared copy-on-write stays visible however small).
// Drawing one rectangle per run would make a heap of tens of thousands
// of alternating runs cost more to write, and to render, than the rest of
// the report, for detail no screen shows; the JSON keeps every run.
func drawnRuns(v *VMA) []Run {
	if len(v.Runs) <= mapBarW || v.End <= v.Start {
		return v.Runs
	}
	size := v.End - v.Start
	col := func(a uint64) int { return int(min((a-v.Start)/(size/mapBarW+1), mapBarW-1)) }
	colStart := func(c int) uint64 { return v.Start + uint64(c)*(size/mapBarW+1) }
	rank := map[string]int8{"resident": 1, "shared": 2, "guard": 3}
	names := [...]string{1: "resident", 2: "shared", 3: "guard"}
	var states [mapBarW]int8
	for _, r := range v.Runs {
		if r.End <= r.Start || r.Start < v.Start || r.End > v.End {
			continue
		}
		for c := col(r.Start); c <= col(r.End-1); c++ {
			states[c] = max(states[c], rank[r.State])
		}
	}
	var out []Run
	for c := 0; c < mapBarW; {
		st := states[c]
		e := c + 1
		for e < mapBarW && states[e] == st {
			e++
		}
		if st != 0 {
			end := v.End
			if e < mapBarW {
				end = min(colStart(e), v.End)
			}
			out = append(out, Run{Start: colStart(c), End: end, State: names[st]})
		}
		c = e
	}
	return out
}

func lockedWord(locked bool) string {
	if locked {
		return ", locked"
	}
	return ""
}

const pageCSS = `
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px 24px 16px 24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px;border-bottom:1px solid #ddd}h3{font-size:14px;margin:14px 0 6px}
code,pre,.addr,.label,.gap-label{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace}
.cmd{color:#555;margin:0 0 10px}
table{border-collapse:collapse}th,td{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}
#summary{display:flex;flex-wrap:wrap;gap:6px 26px;margin:8px 0 4px}.fig b{display:block;font-size:16px}.fig span{color:#666;font-size:12px}
.tables{display:flex;flex-wrap:wrap;gap:0 40px}#syscalls td.count,#syscalls td.errors,#sites td.count,#sites td.errors,#processes td.faults,#processes td.mem-calls{text-align:right}
.bar{display:inline-block;height:9px;background:#4e79a7;vertical-align:middle}
.legend{margin:6px 0;display:flex;flex-wrap:wrap;gap:4px 14px}.legend i{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle;border:1px solid #0003}
.legend i.faint{background:#d4a92a40}.legend i.pat-guard{background:repeating-linear-gradient(45deg,#c00 0 3px,#000 3px 5px)}.legend i.pat-shared{background:repeating-linear-gradient(45deg,#333 0 3px,#fff 3px 6px)}
.mk{display:inline-block;font-weight:bold;margin-left:8px}.mk.fork,.marker.fork text{color:#b07aa1;fill:#b07aa1}.mk.exec,.marker.exec text{color:#4e79a7;fill:#4e79a7}.mk.exit,.marker.exit text{color:#e15759;fill:#e15759}
.axis line{stroke:#999}.axis line.grid{stroke:#eee}.axis text{font-size:10px;fill:#555}
polyline.line{fill:none;stroke-width:1.6}rect.faults{fill:#999}rect.sample{fill:transparent}rect.sample:hover{fill:#0000000d}
.marker line{stroke-width:1;stroke-dasharray:3 2}.marker.fork line{stroke:#b07aa1}.marker.exec line{stroke:#4e79a7}.marker.exit line{stroke:#e15759}.marker text{font-size:10px;font-weight:bold;text-anchor:middle}
.marker.dim{opacity:.15}
.readout{color:#333;margin-left:12px;font-family:ui-monospace,monospace;font-size:12px}
.snaps button{font:inherit;font-size:12px;margin:0 4px 4px 0;padding:1px 8px;border:1px solid #aaa;background:#f6f6f6;border-radius:3px;cursor:pointer}.snaps button.on{background:#4e79a7;color:#fff;border-color:#4e79a7}
.snap-sum{margin:2px 0 6px;color:#444}
svg.map{display:block}svg.map rect.bg{opacity:.28}.gap rect{fill:#f3f3f3;stroke:#ddd;stroke-width:.5}
.vma{cursor:pointer}.vma:hover rect.bg,.vma.sel rect.bg{opacity:.5;stroke:#000;stroke-width:1}
.addr,.label,.gap-label{font-size:11px;fill:#333}.gap-label{fill:#999;font-style:italic}.vname{fill:#000;font-weight:600}
rect.locked{fill:#222}
.note{color:#666;margin:2px 0}
#smaps-panel{position:fixed;right:12px;bottom:12px;width:460px;max-height:55vh;overflow:auto;background:#fffffff2;border:1px solid #bbb;box-shadow:0 2px 8px #0002;font-size:11px}
#smaps-panel .panel-head{padding:3px 8px;background:#eee;font-weight:600}#smaps-panel .hint{font-weight:normal;color:#777}#smaps{margin:0;padding:6px 8px;white-space:pre}
#smaps:empty{display:none}
`

// pageJS is the page's script: the smaps entry of a vma on hover or
// click, the choice of snapshot and of the timeline's process, and the
// figures of a timeline interval on hover. The page is whole without it.
// A page opened as FILE.html#vma=N starts with the N-th vma of the page
// (in the order of the processes, their snapshots and their vmas)
// clicked, its smaps entry shown.
const pageJS = `
(function(){
"use strict";
function hex(n,w){var s=Number(n).toString(16);while(s.length<w)s="0"+s;return s;}
function kb(label,n){var s=String(Math.floor(Number(n)/1024));while(s.length<8)s=" "+s;return label+s+" kB\n";}
function smaps(d){
  var l=hex(d.start,8)+"-"+hex(d.end,8)+" "+d.perms+" "+hex(d.offset,8)+" "+d.dev+" "+d.inode+" ";
  if(d.name){while(l.length<73)l+=" ";l+=d.name;}
  l+="\n";
  var size=Number(d.end)-Number(d.start);
  l+=kb("Size:           ",size)+kb("KernelPageSize: ",4096)+kb("MMUPageSize:    ",4096)+kb("Rss:            ",d.rss)+kb("Pss:            ",d.pss);
  l+=kb("Shared_Clean:   ",d.sharedClean)+kb("Shared_Dirty:   ",d.sharedDirty)+kb("Private_Clean:  ",0)+kb("Private_Dirty:  ",d.privateDirty);
  l+=kb("Anonymous:      ",d.anonymous)+kb("Locked:         ",d.locked)+"VmFlags: "+d.flags+"\n";
  l+="\n(vmspace) kind "+d.kind+" ("+d.mmKind+"), shared copy-on-write "+Math.floor(Number(d.shared)/1024)+" kB, guard "+Math.floor(Number(d.guard)/1024)+" kB\n";
  return l;
}
var pre=document.getElementById("smaps"),sel=null;
document.querySelectorAll("g.vma").forEach(function(g){
  g.addEventListener("mouseenter",function(){if(!sel)pre.textContent=smaps(g.dataset);});
  g.addEventListener("mouseleave",function(){if(!sel)pre.textContent="";});
  g.addEventListener("click",function(){
    if(sel)sel.classList.remove("sel");
    if(sel===g){sel=null;pre.textContent="";return;}
    sel=g;g.classList.add("sel");pre.textContent=smaps(g.dataset);
  });
});
document.querySelectorAll("section.space").forEach(function(sec){
  var btns=sec.querySelectorAll(".snap-btn"),snaps=sec.querySelectorAll("div.snap");
  btns.forEach(function(b){b.addEventListener("click",function(){
    btns.forEach(function(o){o.classList.toggle("on",o===b);});
    snaps.forEach(function(s){s.style.display=s.dataset.index===b.dataset.index?"":"none";});
  });});
});
function size(n){n=Number(n);var u=["B","KiB","MiB","GiB","TiB"],i=0;while(n>=1024&&i<u.length-1){n/=1024;i++;}return (i?n.toFixed(1):n)+" "+u[i];}
function dur(ns){ns=Number(ns);return ns<1e6?(ns/1e3).toFixed(1)+" µs":ns<1e9?(ns/1e6).toFixed(1)+" ms":(ns/1e9).toFixed(2)+" s";}
var tsel=document.getElementById("tl-proc"),out=document.getElementById("tl-readout");
if(tsel){
  tsel.addEventListener("change",function(){
    var v=tsel.value;
    document.querySelectorAll("g.tl-group").forEach(function(g){g.style.display=g.dataset.proc===v?"":"none";});
    document.querySelectorAll("g.marker").forEach(function(m){m.classList.toggle("dim",v!=="all"&&m.dataset.pid!==v&&m.dataset.child!==v);});
  });
}
document.querySelectorAll("rect.sample").forEach(function(r){
  r.addEventListener("mouseenter",function(){
    var d=r.dataset,s="t "+dur(d.tNs)+" · VmSize "+size(d.vmSize)+" · RSS "+size(d.rss)+" · locked "+size(d.locked);
    if(d.memFile!==undefined)s+=" · memory file "+size(d.memFile);
    out.textContent=s+" · faults "+d.faults;
  });
});
var want=/^#vma=(\d+)$/.exec(location.hash);
if(want){var g=document.querySelectorAll("g.vma")[Number(want[1])];if(g)g.dispatchEvent(new MouseEvent("click",{bubbles:true}));}
document.body.setAttribute("data-ready","1");
})();
`
