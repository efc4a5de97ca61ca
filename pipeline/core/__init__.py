"""What every stage shares: the job spec (config), the rows and error kinds (rows)."""
