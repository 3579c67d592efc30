"""The output-folder walker on real folders: totals, a walk spread over passes, links not
followed, folders vanishing mid-walk, unreadable folders (as an unprivileged user)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from costmeter.service.storage_watch import DirWalk, StorageWatch, measure_dir
from costmeter.store.runs import RunStore


def _tree(root: Path) -> int:
    """Three folders of files of known sizes; returns the total bytes."""
    total = 0
    for i in range(3):
        d = root / f"d{i}"
        d.mkdir(parents=True)
        for j in range(4):
            data = b"x" * (100 * (i + 1) + j)
            (d / f"f{j}.bin").write_bytes(data)
            total += len(data)
    return total


def test_a_folder_is_measured_to_its_bytes_and_files(tmp_path: Path) -> None:
    total = _tree(tmp_path / "out")
    usage = measure_dir(str(tmp_path / "out"))
    assert (usage.bytes, usage.files) == (total, 12)
    assert not usage.partial and not usage.notes()


def test_a_walk_with_a_small_budget_goes_on_over_passes_to_the_same_totals(
    tmp_path: Path,
) -> None:
    total = _tree(tmp_path / "out")
    walk = DirWalk(str(tmp_path / "out"))
    passes = 1
    while not walk.step(2):
        passes += 1
        assert walk.result().partial  # a lower bound until the walk ends
    assert passes > 3
    assert (walk.result().bytes, walk.result().files) == (total, 12)


def test_a_link_to_a_folder_outside_is_counted_as_a_link_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "huge.bin").write_bytes(b"y" * 50_000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.pt").write_bytes(b"z" * 10)
    (out / "to_outside").symlink_to(outside)
    (out / "to_file").symlink_to(outside / "huge.bin")
    usage = measure_dir(str(out))
    assert (usage.bytes, usage.files, usage.links) == (10, 1, 2)
    assert "2 symbolic links" in "; ".join(usage.notes())


def test_the_output_folder_itself_a_link_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a").write_bytes(b"1234")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert measure_dir(str(tmp_path / "link")).bytes == 0


def test_a_folder_vanishing_mid_walk_is_counted_and_said(tmp_path: Path) -> None:
    out = tmp_path / "out"
    total = _tree(out)
    walk = DirWalk(str(out))
    walk.step(1)  # lists the top folder's first entry: d0..d2 are queued or not yet seen
    walk.step(3)  # the top folder is read; its sub-folders wait on the stack
    for d in out.iterdir():
        shutil.rmtree(d)  # the trainer deletes its old checkpoints meanwhile
    while not walk.step(100):
        pass
    usage = walk.result()
    assert usage.vanished >= 1 and usage.bytes < total
    assert "vanished" in "; ".join(usage.notes())


def test_a_missing_folder_is_said_not_raised(tmp_path: Path) -> None:
    usage = measure_dir(str(tmp_path / "never-written"))
    assert usage.missing and usage.bytes == 0 and "does not exist" in usage.notes()[0]


def test_an_unreadable_folder_is_counted_as_unreadable(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _tree(out)
    locked = out / "d1"
    locked.chmod(0)
    for parent in (tmp_path, *tmp_path.parents):  # the unprivileged user must reach it
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    try:
        if os.geteuid() == 0:
            # root reads everything: measure as an unprivileged user, in a process of its own.
            code = (
                "import os,sys;"
                "from costmeter.service.storage_watch import measure_dir;"
                "os.setgid(65534); os.setuid(65534);"
                "u = measure_dir(sys.argv[1]); print(u.bytes, u.files, u.unreadable)"
            )
            try:
                done = subprocess.run(
                    [sys.executable, "-c", code, str(out)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                )
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"cannot run as an unprivileged user here: {exc.stderr[-200:]}")
            nbytes, files, unreadable = map(int, done.stdout.split())
        else:
            u = measure_dir(str(out))
            nbytes, files, unreadable = u.bytes, u.files, u.unreadable
    finally:
        locked.chmod(0o755)
    assert unreadable == 1 and files == 8  # d0 and d2 counted, d1 said unreadable
    kept = [f for f in out.rglob("*") if f.is_file() and f.parent.name != "d1"]
    assert nbytes == sum(f.stat().st_size for f in kept)


def test_the_watch_writes_a_measurement_only_once_a_walk_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "out"
    total = _tree(out)
    with RunStore.open(tmp_path / "c.db") as store:
        run_id = store.insert(name="t", backend="local", spec={}, status="running")
        ticks = iter(range(1000, 2000))
        # Its own thread waits an hour between passes: the passes here are taken by hand.
        watch = StorageWatch(
            store, lambda: 0.08, interval_s=3600, budget=3, clock=lambda: float(next(ticks))
        )
        watch.watch(run_id, [str(out)])
        watch.pass_once()
        assert store.storage_history(run_id) == []  # 3 entries of 15: not written yet
        for _ in range(10):
            watch.pass_once()
        history = store.storage_history(run_id)
        assert history and {h.bytes for h in history} == {total}
        (out / "d0" / "new.pt").write_bytes(b"n" * 500)
        final = watch.finish(run_id)
        assert final is not None and final[0].bytes == total + 500
        row = store.get(run_id)
        assert row is not None and (row.storage_bytes, row.storage_files) == (total + 500, 13)
        assert row.storage_cost == (total + 500) / 1e9 * 0.08
        assert watch.finish(run_id) is None  # once
        watch.close()
