"""The batch job: the stages chained into one Ray Data graph (run), how the CPU stages feed the engines
(feeding), the checks before any work (preflight), progress and metrics (telemetry), the summary."""
