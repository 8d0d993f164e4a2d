package algorithms

// Helpers shared by the algorithms other than FixedWindow. They keep to
// what the Lua twins can compute exactly on doubles: + - * on integers
// below 2^53 and the floor division of non-negative integers. (In Lua,
// math.floor(a/b) is the exact floor for integers a >= 0, b > 0 with
// a + b < 2^53; every division here meets that for instants before 2255
// and limits within MaxAmount. Negative numerators occur only in floorDiv
// and floorMod of instants before 1970, which the Lua twins need not
// support.)

// floorDiv is a/b rounded down, for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// ceilDiv is a/b rounded up, for a >= 0 and b > 0.
func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 {
		q++
	}
	return q
}

// clampAmount limits v to [0, MaxAmount].
func clampAmount(v int64) int64 {
	return min(max(v, 0), MaxAmount)
}

// ticks chooses the time resolution for an amount (a rate or a capacity,
// at most MaxAmount) spread over length microseconds (> 0): the tick u is
// the smallest power of ten such that amount × p stays within budget, where
// p = ceil(length/u) is the length in ticks. Amounts of up to 2^50/length
// (e.g. 1.8e7 a minute, 1.3e4 a day) get u = 1 µs and exact math; larger
// ones a coarser grid, on which the algorithms are conservative: a length
// rounded up to whole ticks refills no faster and weighs no less.
func ticks(amount, length int64) (u, p int64) {
	u, p = 1, length
	for amount > 0 && p > budget/amount {
		u *= 10
		p = ceilDiv(length, u)
	}
	return u, p
}
