"""Files the tests read back: what a command must leave unchanged below a folder, and the
training logs nnU-Net wrote into a fold folder."""
import hashlib


def tree_hashes(folder):
    """{relative path: sha256} of every file under ``folder``, hidden ones included ({} when
    ``folder`` does not exist)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def training_logs(fold) -> str:
    """The text of every nnU-Net training log in ``fold``, oldest first (each ``nnUNetv2_train``
    run, a resumed one too, writes its own ``training_log_<time>.txt``)."""
    logs = sorted(fold.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime_ns)
    assert logs, f"no training log in {fold}"
    return "\n".join(p.read_text() for p in logs)
