package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Reference is the reference figures of one workload from
// shared/spec/workloads.md: medians of 3 runs on the reference machine class
// (2 vCPUs, Linux 6.18).
type Reference struct {
	// Workload is the JSON name.
	Workload string
	// Unit is the unit of both figures.
	Unit string
	// GVisor is gVisor's memory manager, driven through its Go API.
	GVisor float64
	// Linux is native Linux (see the spec for what each measures); 0 if
	// there is none.
	Linux float64
	// HigherIsBetter is true for throughputs (MB/s).
	HigherIsBetter bool
	// Derived is true for figures the spec does not list but that follow
	// from one it does (the MB/s of a copy, from its ns/op): they are
	// shown, but not counted in the geometric mean.
	Derived bool
}

// References are the reference figures, in canonical order.
var References = []Reference{
	{Workload: "mmap_munmap_64k", Unit: "ns/op", GVisor: 811, Linux: 3583},
	{Workload: "populate_256m", Unit: "ns/page", GVisor: 2459, Linux: 1387},
	{Workload: "fault_256m", Unit: "ns/page", GVisor: 96, Linux: 1383},
	{Workload: "copyin_8", Unit: "ns/op", GVisor: 32.3, Linux: 1184},
	{Workload: "copyout_4k", Unit: "ns/op", GVisor: 48.6, Linux: 1207},
	{Workload: "copyout_4k_mbps", Unit: "MB/s", GVisor: 4096 / 48.6 * 1e3, Linux: 4096 / 1207.0 * 1e3, HigherIsBetter: true, Derived: true},
	{Workload: "copyin_1m", Unit: "ns/op", GVisor: 14440, Linux: 70478},
	{Workload: "copyin_1m_mbps", Unit: "MB/s", GVisor: 1048576 / 14440.0 * 1e3, Linux: 1048576 / 70478.0 * 1e3, HigherIsBetter: true, Derived: true},
	{Workload: "mprotect_split_4096", Unit: "ns", GVisor: 1790000, Linux: 5910000},
	{Workload: "mprotect_merge_4096", Unit: "ns", GVisor: 582000, Linux: 3990000},
	{Workload: "vma_lookup_100k", Unit: "ns/op", GVisor: 517, Linux: 1696},
	{Workload: "vma_bytes_100k", Unit: "B/vma", GVisor: 548.5, Linux: 356},
	{Workload: "fork_256m", Unit: "ns/op", GVisor: 56600, Linux: 7000000},
	{Workload: "fork_cow_break", Unit: "ns/page", GVisor: 1912, Linux: 1948},
	{Workload: "brk_grow_64m", Unit: "ns/step", GVisor: 118.5, Linux: 672},
	{Workload: "mremap_grow", Unit: "ns/op", GVisor: 2183, Linux: 5312},
	{Workload: "parallel_copyin_8", Unit: "ns/op", GVisor: 32.2, Linux: 604},
	{Workload: "fault_as", Unit: "ns/page", GVisor: 13836, Linux: 1276},
}

// ReferenceFor returns the reference figures of workload, if any.
func ReferenceFor(workload string) (Reference, bool) {
	for _, r := range References {
		if r.Workload == workload {
			return r, true
		}
	}
	return Reference{}, false
}

// Ratio returns how many times better v is than ref: ref/v for figures
// where lower is better, v/ref for throughputs. Above 1, vmspace is
// better. ok is false if either figure is not positive.
func (r Reference) Ratio(v float64) (ratio float64, ok bool) {
	return ratioOf(r.GVisor, v, r.HigherIsBetter)
}

func ratioOf(ref, v float64, higherIsBetter bool) (float64, bool) {
	if !(ref > 0 && v > 0) || math.IsInf(v, 0) {
		return 0, false
	}
	if higherIsBetter {
		return v / ref, true
	}
	return ref / v, true
}

// GeoMean returns the geometric mean of the gVisor/vmspace ratios of the
// successful results that have a (non-derived) reference, and how many
// there were.
func GeoMean(rs []Result) (float64, int) {
	sum, n := 0.0, 0
	for _, r := range rs {
		ref, ok := ReferenceFor(r.Workload)
		if !ok || ref.Derived || r.Err != nil {
			continue
		}
		q, ok := ref.Ratio(r.Value)
		if !ok {
			continue
		}
		sum += math.Log(q)
		n++
	}
	if n == 0 {
		return 0, 0
	}
	return math.Exp(sum / float64(n)), n
}

// FormatTable writes rs as a text table against the reference figures:
// workload, unit, vmspace's value, gVisor's, the ratio gVisor/vmspace
// (vmspace/gVisor for MB/s, so that above 1 always means vmspace is
// better), Linux's figure and the ratio Linux/vmspace; then the geometric
// mean of the gVisor ratios.
func FormatTable(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tunit\tvmspace\tgVisor\tgVisor/vmspace\tLinux\tLinux/vmspace\t")
	var failed []Result
	for _, r := range rs {
		ref, hasRef := ReferenceFor(r.Workload)
		unit := r.Unit
		if unit == "" && hasRef {
			unit = ref.Unit
		}
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\t%s\terror\t\t\t\t\t\n", r.Workload, unit)
			failed = append(failed, r)
			continue
		}
		cols := []string{r.Workload, unit, formatValue(r.Value), "-", "-", "-", "-"}
		if hasRef {
			cols[3] = formatValue(ref.GVisor)
			if q, ok := ref.Ratio(r.Value); ok {
				cols[4] = fmt.Sprintf("%.2fx", q)
			}
			if ref.Linux > 0 {
				cols[5] = formatValue(ref.Linux)
				if q, ok := ratioOf(ref.Linux, r.Value, ref.HigherIsBetter); ok {
					cols[6] = fmt.Sprintf("%.2fx", q)
				}
			}
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	}
	if g, n := GeoMean(rs); n > 0 {
		fmt.Fprintf(tw, "geomean (%d workloads)\t\t\t\t%.2fx\t\t\t\n", n, g)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, "ratios above 1x: vmspace is better (lower time or bytes, higher MB/s); MB/s references are derived from the ns/op ones"); err != nil {
		return err
	}
	for _, r := range failed {
		if _, err := fmt.Fprintf(w, "%s: error: %s\n", r.Workload, oneLine(r.Err.Error())); err != nil {
			return err
		}
	}
	return nil
}

// formatValue formats a figure with one decimal, or none when large.
func formatValue(v float64) string {
	if math.Abs(v) >= 1e5 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// oneLine keeps a message to one line for a table cell.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\t", " ")
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	return s
}
