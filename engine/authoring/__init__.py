"""Authoring: everything a compliance team writes, checked before launch.

Campaign files and their YAML positions, regions and their languages, gettext catalogs and
their glossary, rendering (Jinja2 + Babel) into prebuilt skeletons, the residue scan of
rendered output, `herald validate`, `herald preview`, the objection pages' content, and the
campaign's spec (the exact files it launches with). Pure once the files are read.

May import: the store and the core (`engine.errors`, `models`, `statuses`, `config`, `logs`,
`canonical`). Nothing here sends, schedules or serves.
"""
