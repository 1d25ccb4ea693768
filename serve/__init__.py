"""The prediction service: FastAPI app over `urgency.predict` and `urgency.scoring`."""
