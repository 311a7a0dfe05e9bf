/* clock.h - monotonic time. */
#ifndef QF_CLOCK_H
#define QF_CLOCK_H

#include <stdint.h>

uint64_t qf_now_ns(void); /* CLOCK_MONOTONIC, nanoseconds */
double qf_now_s(void);

#endif
