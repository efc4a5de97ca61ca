"""What analysts' tools see: an output folder with two committed runs (one with a run id that looks
like a date), a run whose driver was killed mid-run, and a truncated file left in its staging. Every
whole-folder read the README shows — pyarrow, pandas, DuckDB, Polars, Spark — returns the committed
rows only, run_id stays a string, and no marker or manifest is read as data."""
import shutil

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import RUNS
from pipeline.store import output

@pytest.fixture(scope="module")
def out(output_with_a_killed_run):
    return output_with_a_killed_run


def _committed(out):
    return sum(output.read_pages(str(out), r).num_rows for r in RUNS)


def test_pyarrow_pandas_duckdb_read_committed_rows_only_with_string_run_ids(out):
    expected = _committed(out)
    table = pq.read_table(out / "pages")
    assert table.num_rows == expected and str(table.schema.field("run_id").type) == "string"
    assert sorted(set(table.column("run_id").to_pylist())) == sorted(RUNS)
    df = pd.read_parquet(out / "pages", dtype_backend="pyarrow")
    assert len(df) == expected and str(df["page_index"].dtype) == "int32[pyarrow]"  # nullable ints stay ints
    for glob in (f"{out}/pages/**/*.parquet", f"{out}/pages/*/*.parquet"):
        rel = duckdb.sql(f"select run_id, count(*) from read_parquet('{glob}') group by run_id order by run_id")
        assert [str(t) for t in rel.types] == ["VARCHAR", "BIGINT"]
        assert sum(n for _, n in rel.fetchall()) == expected
    docs = duckdb.sql(f"select distinct run_id from read_parquet('{out}/documents/**/*.parquet')").fetchall()
    assert sorted(r for (r,) in docs) == sorted(RUNS)


def test_polars_reads_the_folder_and_the_glob(out):
    pl = pytest.importorskip("polars")
    expected = _committed(out)
    for source in (str(out / "pages"), f"{out}/pages/**/*.parquet"):
        frame = pl.scan_parquet(source).collect()
        assert frame.height == expected and frame.schema["run_id"] == pl.String


def test_spark_reads_the_folder(out):
    pyspark = pytest.importorskip("pyspark")
    if not shutil.which("java"):
        pytest.skip("no Java runtime (scripts/install_cpu.sh installs OpenJDK 17)")
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[1]").appName("docintel-readers")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1").getOrCreate())
    try:
        frame = spark.read.parquet(f"{out}/pages/*")  # the run folders (Spark 4 lists no plain subfolder)
        assert frame.count() == _committed(out)
        assert dict(frame.dtypes)["run_id"] == "string" and dict(frame.dtypes)["page_index"] == "int"
        runs = sorted(r.run_id for r in frame.select("run_id").distinct().collect())
        assert runs == sorted(RUNS) and pyspark.__version__
        assert spark.read.parquet(f"{out}/documents/*").select("run_id").distinct().count() == len(RUNS)
    finally:
        spark.stop()


def test_the_latest_run_is_the_last_committed(out):
    assert output.committed_runs(str(out)) == list(RUNS)
    assert set(output.read_pages(str(out)).column("run_id").to_pylist()) == {"nightly-10"}
