"""docintel: batch document intelligence on Ray Data and vLLM.

The stages, data moving one way, each in its folder:
    ingest (find, read, render, requests) -> engine (vLLM actors) -> answers (parse, validate,
    confidence, place) -> store (Parquet, as the job runs) -> commit (per document, then _SUCCESS);
job/run.py chains them, cli.py is the entry point. core/ is what all share; tasks/ what is asked.
"""
