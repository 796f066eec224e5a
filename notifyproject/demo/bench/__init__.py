"""The benchmark harness behind ``manage.py bench_notifications`` (issues 5 and 11).

It drives the real stack the way production does and reports what it measured:

- ``config``      options, the sizes of each scenario (full and ``--quick``), the targets;
- ``stats``       percentiles and the median/min/max summary of repetitions;
- ``workers``     child processes that speak JSON lines (and die with the benchmark);
- ``clients``     the WebSocket client process: a standalone script, no Django;
- ``creator``     the process that commits notifications one by one, timestamping each commit;
- ``stack``       the daphne and listener children, their RSS and CPU time;
- ``population``  throwaway users, sessions and a group, and their removal;
- ``peers``       django-notifications-hq's write paths re-enacted on a table of its shape;
- ``scenarios``   P1-P5, peers and scale;
- ``triage``      T1 (archive/snooze/unread across a user's tabs) and T2 (snoozes coming back);
- ``report``      the machine description, the table and the JSON file;
- ``runner``      one run from set-up to teardown (also on Ctrl-C and failures).
"""
