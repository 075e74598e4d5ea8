"""Examples of using the job service: a producer (examples/producer.py) and custom handlers
(examples/handlers.py). Run them from the repository root; see docs/client.md."""
