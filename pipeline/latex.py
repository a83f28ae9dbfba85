"""LaTeX helpers shared by the report's tables."""

from __future__ import annotations


def escape(text: str) -> str:
    """``text`` safe inside a LaTeX table cell or caption (backslash first, then the rest)."""
    return (text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
            .replace("&", r"\&").replace("#", r"\#"))
