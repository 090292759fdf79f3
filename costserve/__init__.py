"""costserve: batch LLM inference on the cheapest GPU fleet that meets a deadline, quality and budget."""

__version__ = "0.1.0"
