"""The classifier's own table: features of classified tasks of tenants that opted in (never the text)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, LargeBinary, MetaData, String, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from switchyard.common.db import UTCDateTime


class ClassifierBase(DeclarativeBase):
    metadata = MetaData()


class OutcomeFeatures(ClassifierBase):
    """The head's input for one task: embedding + lexical features (float32), and what made them."""

    __tablename__ = "classifier_outcome_features"
    __table_args__ = (UniqueConstraint("tenant_id", "task_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    task_id: Mapped[str] = mapped_column(String(64))
    embedding_model_sha256: Mapped[str] = mapped_column(String(64))
    features_version: Mapped[str] = mapped_column(String(32))
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32 [embedding_dim + lexical DIM]
    # written in a Latin-script language other than English (`languages.other_language`): with the
    # lexical features, says which type head reads the prompt (heads.ScriptHead.takes)
    other_language: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
