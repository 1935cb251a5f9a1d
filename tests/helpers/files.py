"""What a command must leave unchanged: file contents below a folder."""
import hashlib


def tree_hashes(folder):
    """{relative path: sha256} of every file under ``folder``, hidden ones included ({} when
    ``folder`` does not exist)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}
