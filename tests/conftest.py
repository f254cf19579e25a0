import os
import sys
from pathlib import Path

# Tests run offline and must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# tiny_training.py is both imported by tests and run as a script.
sys.path.insert(0, str(Path(__file__).parent))
