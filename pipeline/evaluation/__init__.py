"""`docintel eval`: a gold set run through the job and scored (evaluate, metrics), and its HTML report."""
