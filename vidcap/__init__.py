"""vidcap: a self-hosted service that captions videos and answers questions about them."""

__version__ = "0.1.0"
