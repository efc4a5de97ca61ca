"""What analysts' tools see: an output folder with two committed runs (one with a run id that looks
like a date), a run whose driver was killed mid-run, and a truncated file left in its staging. Every
whole-folder read the README shows — pyarrow, pandas, DuckDB, Polars, Spark — returns the committed
rows only, run_id stays a string, and no marker or manifest is read as data. And every line of the
README's output section runs, as written, against this output (`test_the_readmes_output_section_runs`)."""
import re
import shutil
import subprocess

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

import harness
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


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """A local Spark, and the folder its JVM started in: Spark resolves a relative path against that
    folder, not against Python's working directory."""
    import os

    pytest.importorskip("pyspark")
    if not shutil.which("java"):
        pytest.skip("no Java runtime (scripts/install_cpu.sh installs OpenJDK 17)")
    from pyspark.sql import SparkSession

    home, cwd = tmp_path_factory.mktemp("spark-home"), os.getcwd()
    os.chdir(home)
    try:
        session = (SparkSession.builder.master("local[1]").appName("docintel-readers")
                   .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1").getOrCreate())
    finally:
        os.chdir(cwd)
    yield session, home
    session.stop()


def test_spark_reads_the_folder(out, spark):
    import pyspark

    spark, _ = spark
    frame = spark.read.parquet(f"{out}/pages/*")  # the run folders (Spark 4 lists no plain subfolder)
    assert frame.count() == _committed(out)
    assert dict(frame.dtypes)["run_id"] == "string" and dict(frame.dtypes)["page_index"] == "int"
    runs = sorted(r.run_id for r in frame.select("run_id").distinct().collect())
    assert runs == sorted(RUNS) and pyspark.__version__
    assert spark.read.parquet(f"{out}/documents/*").select("run_id").distinct().count() == len(RUNS)


def _readme_section(title: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of each fenced block in the README section headed `title`."""
    text = (harness.REPO / "README.md").read_text()
    section = text.split(f"\n{title}\n", 1)[1].split("\n#", 1)[0]
    return [(lang, body.splitlines()) for lang, body in re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)]


def _rows(result) -> int:
    """Rows of whatever a reader returned (pyarrow, DuckDB, Spark, Polars, pandas)."""
    if hasattr(result, "num_rows"):
        return result.num_rows
    if hasattr(result, "fetchall"):
        return len(result.fetchall())
    if hasattr(result, "rdd"):
        return result.count()
    if hasattr(result, "collect"):
        return result.collect().height
    return len(result)


def test_the_readmes_output_section_runs(out, spark, monkeypatch):
    """Every Python line of the README's output section, as written, on a real output in ./out; every
    shell line in ./; every path its layout listing names exists. ./ is Spark's folder, so that its
    relative paths and Python's mean the same."""
    import pandas
    import polars
    import pyarrow
    import pyarrow.parquet  # noqa: F401 - the README writes pyarrow.parquet.read_table

    import pipeline
    import pipeline.store.output  # noqa: F401 - the README writes pipeline.store.output.read_pages

    spark, tmp_path = spark
    (tmp_path / "out").symlink_to(out)
    monkeypatch.chdir(tmp_path)
    names = {"pyarrow": pyarrow, "pandas": pandas, "duckdb": duckdb, "polars": polars, "spark": spark,
             "pipeline": pipeline}
    blocks = _readme_section("### Output")
    ran = 0
    for lang, lines in blocks:
        for line in (raw.split("#")[0].strip() for raw in lines):
            if not line:
                continue
            if lang == "python":
                results = eval(line, dict(names))  # noqa: S307 - the README's own lines
                for result in results if isinstance(results, tuple) else (results,):
                    assert _rows(result) > 0, line
            elif lang in ("bash", "sh", "shell"):
                subprocess.run(line, shell=True, check=True, cwd=tmp_path)
            else:  # the layout listing: OUTPUT/... paths, RUN_ID for a run
                pattern = line.split()[0].replace("OUTPUT/", "out/").replace("RUN_ID", RUNS[-1])
                assert list(tmp_path.glob(pattern.rstrip("/"))), line
            ran += 1
    assert ran >= 9 and {lang for lang, _ in blocks} >= {"python", ""}


def test_the_latest_run_is_the_last_committed(out):
    assert output.committed_runs(str(out)) == list(RUNS)
    assert set(output.read_pages(str(out)).column("run_id").to_pylist()) == {"nightly-10"}
