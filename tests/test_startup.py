"""TensorFlow's C++ start-up chatter is filtered out of stderr; its real warnings and errors, and
everything with --verbose, still get through."""

import subprocess
import sys
import textwrap

# A stand-in for TensorFlow that prints, from C-level stderr, what the real one prints at start-up
# on a CPU machine, plus one real warning.
FAKE_TENSORFLOW = textwrap.dedent("""
    import os
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
    os.write(2, b"I0000 00:00:1.5 12 cudart_stub.cc:31] Could not find cuda drivers on your machine.\\n")
    os.write(2, b"W0000 00:00:1.6 12 real_warning.cc:7] disk almost full\\n")

    class config:
        @staticmethod
        def list_physical_devices():
            os.write(2, b"E0000 00:00:1.7 12 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\\n")
            os.write(2, b"I0000 00:00:1.8 12 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\\n")
            os.write(2, b"To enable the following instructions: AVX2 FMA, in other operations, rebuild.\\n")
            return []
""")


def start(tmp_path, verbose):
    (tmp_path / "tensorflow").mkdir(exist_ok=True)
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from bertclf.training.startup import import_tensorflow; "
        f"import_tensorflow(verbose={verbose}); print('started')"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_chatter_is_filtered_and_real_warnings_are_kept(tmp_path):
    result = start(tmp_path, verbose=False)
    assert result.returncode == 0 and result.stdout == "started\n"
    assert result.stderr == "W0000 00:00:1.6 12 real_warning.cc:7] disk almost full\n"


def test_verbose_keeps_every_line(tmp_path):
    result = start(tmp_path, verbose=True)
    assert result.returncode == 0
    for fragment in (
        "absl::InitializeLog",
        "cudart_stub",
        "disk almost full",
        "cuInit",
        "cpu_feature_guard",
        "To enable the following instructions",
    ):
        assert fragment in result.stderr
