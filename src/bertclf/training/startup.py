"""Process start-up: import TensorFlow without the pages of C++ chatter it prints first.

On import and when it first looks for devices, TensorFlow's C++ side prints lines that say
nothing to a user of a CPU machine (no CUDA drivers found, cuInit failed, which CPU flags it
could use, absl's note about its own logging), some of them twice, and some at levels that
TF_CPP_MIN_LOG_LEVEL does not hide. Hiding every level would hide real errors too, so we capture
the process's stderr for those moments and replay every line except the known chatter.
"""

import os
import re
import sys
import tempfile

# The lines TensorFlow prints at start-up on a machine without a GPU; anything else is replayed.
CHATTER = re.compile(
    r"absl::InitializeLog\(\)|cudart_stub\.cc|cuda_platform\.cc.*cuInit|cuda_executor\.cc|cuda_dnn\.cc|"
    r"cuda_fft\.cc|cuda_blas\.cc|cpu_feature_guard\.cc|^To enable the following instructions|"
    r"oneDNN custom operations are on|TF-TRT Warning|computation_placer\.cc|Unable to register cu\w+ factory"
)
# Set, or --verbose, shows TensorFlow's start-up output untouched.
VERBOSE_VARIABLE = "BERTCLF_TF_LOGS"


def import_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow and let it find its devices, with the start-up chatter filtered out of
    stderr (everything else it prints is kept). A no-op once TensorFlow is imported.

    Args:
        verbose: keep every line (also when the environment sets BERTCLF_TF_LOGS=1).
    """
    if "tensorflow" in sys.modules:
        return
    if verbose or os.environ.get(VERBOSE_VARIABLE, "") not in ("", "0"):
        os.environ[VERBOSE_VARIABLE] = "1"  # and so in the processes this one starts
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    # INFO lines of TensorFlow's own logging; its warnings and errors still print.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probing happens here, not at import
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode("utf-8", "replace").splitlines()
                if line.strip() and not CHATTER.search(line)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)
