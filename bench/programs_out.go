package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// FormatProgramTable writes the program results as a table: per workload,
// each system's median and spread (min-max), the ratios to native, and
// vmspace's stop counts.
func FormatProgramTable(w io.Writer, rs []ProgramResult) error {
	hasRunsc, hasBase := false, false
	for _, r := range rs {
		for _, s := range r.Samples {
			hasRunsc = hasRunsc || s.System == SystemRunsc
			hasBase = hasBase || s.System == SystemBaseline
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "workload\tnative ms\tvmspace ms\tvmspace/native\t"
	if hasBase {
		head += "baseline ms\tbaseline/native\tbaseline stops\tbaseline injected\t"
	}
	if hasRunsc {
		head += "runsc ms\trunsc/native\t"
	}
	head += "stops\tfaults\tmem calls\tinjected\tin vmspace ms\t"
	fmt.Fprintln(tw, head)
	var notes []string
	for _, r := range rs {
		if r.Skipped != "" || r.Err != nil {
			why := "skipped: " + r.Skipped
			if r.Err != nil {
				why = "error"
				notes = append(notes, fmt.Sprintf("%s: error: %s", r.Workload, oneLine(r.Err.Error())))
			}
			fmt.Fprintf(tw, "%s\t%s\t\n", r.Workload, why)
			continue
		}
		cols := []string{r.Workload}
		get := func(sys string) *ProgramSample {
			for i := range r.Samples {
				if r.Samples[i].System == sys {
					return &r.Samples[i]
				}
			}
			return nil
		}
		cell := func(s *ProgramSample) string {
			if s == nil {
				return "-"
			}
			if s.Err != nil {
				notes = append(notes, fmt.Sprintf("%s on %s: error: %s", r.Workload, s.System, oneLine(s.Err.Error())))
				return "error"
			}
			return fmt.Sprintf("%s (%s-%s)", fmtMs(s.Median), fmtMs(s.Min), fmtMs(s.Max))
		}
		ratio := func(s *ProgramSample) string {
			if s == nil || s.Err != nil || s.Ratio == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2fx", s.Ratio)
		}
		vm := get(SystemVmspace)
		cols = append(cols, cell(get(SystemNative)), cell(vm), ratio(vm))
		if hasBase {
			b := get(SystemBaseline)
			cols = append(cols, cell(b), ratio(b))
			if b != nil && b.Stats != nil {
				cols = append(cols, fmtCount(b.Stats.Stops), fmtCount(b.Stats.Injected))
			} else {
				cols = append(cols, "-", "-")
			}
		}
		if hasRunsc {
			rn := get(SystemRunsc)
			cols = append(cols, cell(rn), ratio(rn))
		}
		if vm != nil && vm.Stats != nil {
			st := vm.Stats
			cols = append(cols, fmtCount(st.Stops), fmtCount(st.Faults), fmtCount(st.MemCalls), fmtCount(st.Injected), fmtMs(st.ManagerMs))
		} else {
			cols = append(cols, "-", "-", "-", "-", "-")
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, "medians (min-max) of the timed runs; stops, faults, memory calls, injected calls and time in vmspace are vmspace run --stats's medians"); err != nil {
		return err
	}
	for _, n := range notes {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

// fmtMs formats milliseconds with 3 significant-ish digits.
func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// fmtCount formats a (median) count.
func fmtCount(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// WriteProgramJSON writes one JSON object per line for each system of each
// result, in the form of shared/spec/workloads.md plus the spread and the
// ratio:
//
//	{"system":"vmspace","workload":"true","value":21.4,"unit":"ms","iters":5,"min":20.9,"max":23.0,"ratio":4.1,"stops":25,...}
//
// A skipped workload is one line per system with "skipped" and no value;
// a failed one has "error".
func WriteProgramJSON(w io.Writer, rs []ProgramResult, systems []string) error {
	for _, r := range rs {
		if r.Skipped != "" || r.Err != nil {
			for _, sys := range systems {
				b := jsonHead(sys, r.Workload)
				if r.Err != nil {
					b = append(b, `,"error":`...)
					b = appendJSONString(b, r.Err.Error())
				} else {
					b = append(b, `,"skipped":`...)
					b = appendJSONString(b, r.Skipped)
				}
				if _, err := fmt.Fprintf(w, "%s}\n", b); err != nil {
					return err
				}
			}
			continue
		}
		for _, s := range r.Samples {
			b := jsonHead(s.System, r.Workload)
			if s.Err != nil {
				b = append(b, `,"error":`...)
				b = appendJSONString(b, s.Err.Error())
			} else {
				num := func(key string, v float64) {
					b = append(b, `,"`+key+`":`...)
					b = strconv.AppendFloat(b, Round(v), 'f', 1, 64)
				}
				num("value", s.Median)
				b = append(b, `,"unit":`...)
				b = strconv.AppendQuote(b, r.Unit)
				b = append(b, `,"iters":`...)
				b = strconv.AppendInt(b, int64(len(s.Values)), 10)
				num("min", s.Min)
				num("max", s.Max)
				if s.Ratio > 0 {
					b = append(b, `,"ratio":`...)
					b = strconv.AppendFloat(b, s.Ratio, 'f', 2, 64)
				}
				if st := s.Stats; st != nil {
					num("stops", st.Stops)
					num("faults", st.Faults)
					num("mem_calls", st.MemCalls)
					num("injected", st.Injected)
					num("manager_ms", st.ManagerMs)
				}
			}
			if _, err := fmt.Fprintf(w, "%s}\n", b); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonHead starts a JSON line with its system and workload.
func jsonHead(sys, workload string) []byte {
	b := append([]byte(`{"system":`), strconv.Quote(sys)...)
	b = append(b, `,"workload":`...)
	return strconv.AppendQuote(b, workload)
}
