"""The course's lab: what produces the lessons' tables and decks, beside the learner's toolkit.

`studies` (the multi-seed experiments behind every claim), `shipped` (their results files), `claims`
(the verdict lines nbval compares, and tables over seeds), `ddp_workers` (lesson 06's experiments run by
`ftcourse.distributed.launch`) and `slides` (the lessons' slide structure). The lab may import the
toolkit (`ftcourse.*`); the toolkit never imports the lab (tests/unit/test_packaging.py checks it).
Import a module by name: `from ftcourse.lab import shipped, studies`.
"""
