"""urgency: learn how urgent, what kind and how upset a support ticket is."""

__version__ = "0.1.0"
