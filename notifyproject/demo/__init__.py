"""The demo site's own app: demo users, the benchmark and the process supervisor.

Only the demo's settings install it, so none of it reaches a host site or the wheel.
"""
