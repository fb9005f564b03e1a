"""ingress-patrol: benchmarks."""

#: Event-time start of the generated access logs the pre-aggregation benchmarks read: a fixed Monday,
#: 00:00 UTC. The generator's own default is "today 00:00 UTC", and its weekly model runs Saturdays and
#: Sundays at 0.75 of the weekly mean (weekdays at 1.1), so with the default the same command fed ~1.5x
#: fewer lines per window on a weekend (more windows, other reduction and rate figures) than on a weekday.
GEN_START = "2026-11-23T00:00:00+00:00"
