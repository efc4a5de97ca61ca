"""What every stage shares: the job spec (config), the rows and error kinds (rows), the environment
variables the product reads and what of them a job's runtime env carries (envs), the private internals
of vLLM and Ray that the engine and the job lean on (compat)."""
