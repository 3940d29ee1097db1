"""`crmhub demo`: the whole story on the sandbox, with nothing to set up (see `story`)."""

from crmhub.demo.story import DEMO_DIR, run_demo, seed

__all__ = ["DEMO_DIR", "run_demo", "seed"]
