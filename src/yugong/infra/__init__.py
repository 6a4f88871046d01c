"""Infrastructure layer (基础层): storage backends, message bus, embedded broker."""
