"""pynn's version, on the ground floor: the package's face re-exports it, and pynn.tune's
wisdom files (below pynn.backend) are tagged with it. pyproject.toml holds the same string."""
__version__ = "0.1.0"
