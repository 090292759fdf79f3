"""Workers: Celery app and the quantized pipeline inference engine. Never imports pyomo."""
