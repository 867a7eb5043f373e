package traffic

import "strings"

var ticks = []rune("▁▂▃▄▅▆▇█")

// Sparkline draws vals as one line of block characters, scaled to the
// largest value. Zero is always the lowest block and any non-zero value is
// drawn higher, so a trickle of requests stays visible.
func Sparkline(vals []int64) string {
	var max int64
	for _, v := range vals {
		if v > max {
			max = v
		}
	}
	var b strings.Builder
	for _, v := range vals {
		i := 0
		if v > 0 {
			i = int((v*7 + max - 1) / max) // 1..7

		}
		b.WriteRune(ticks[i])
	}
	return b.String()
}
