"""The command line: ``vmmemctl`` and its subcommands, and the words they print.

    main          the parser and one ``cmd_*`` function per command
    report        text and JSON for status, reclaim, history and config show
    doctor        ``vmmemctl doctor``: what works here and what to do about what does not

May import: every box of monitor. The one door to the dashboard is ``cmd_tui``, which imports
``tui`` lazily, so ``import monitor.cli.main`` loads no Textual (tests/test_headless.py).
"""
