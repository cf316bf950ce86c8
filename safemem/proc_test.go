package safemem

import (
	"runtime"
	"sync"
	"testing"
)

// TestProcessor checks that Processor names a processor that exists, from
// goroutines spread over every processor.
func TestProcessor(t *testing.T) {
	n := runtime.GOMAXPROCS(0)
	seen := make(map[int]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 4*n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				p := Processor()
				if p < 0 || p >= n {
					t.Errorf("Processor() = %d, want [0, %d)", p, n)
					return
				}
				mu.Lock()
				seen[p] = true
				mu.Unlock()
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
	if len(seen) == 0 {
		t.Errorf("no processor seen")
	}
}
