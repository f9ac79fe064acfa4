#ifndef MXKIT_GCRA_H
#define MXKIT_GCRA_H

/*
 * gcra - Generic Cell Rate Algorithm, one number per key.
 *
 * A rate of COUNT per PERIOD has an emission interval T = PERIOD/COUNT;
 * the state is the theoretical arrival time (TAT). A cost of n is allowed
 * when max(TAT, now) + n*T - now <= capacity, where capacity = burst*T
 * (burst defaults to COUNT: a fresh key may spend its whole budget at
 * once, then refills smoothly). Times are microseconds in doubles (exact
 * to 2^53 us, about 285 years). The Redis Lua script does the same sums.
 */

struct gcra_result {
    int     allowed;
    double  new_tat;
    double  retry_after;		/* microseconds; 0 when allowed */
};

static inline struct gcra_result gcra_check(double tat, double now, double interval,
					            double capacity, double cost)
{
    struct gcra_result r;

    if (tat < now)
	tat = now;
    r.new_tat = tat + cost * interval;
    /* Half a microsecond of slack absorbs any rounding in the sums. */
    r.allowed = (r.new_tat - now <= capacity + 0.5);
    r.retry_after = r.allowed ? 0 : r.new_tat - now - capacity;
    return (r);
}

#endif
