"""What every stage shares: the job spec (config), the rows and error kinds (rows), the environment
variables the product reads and what of them a job's runtime env carries (envs)."""
