"""server processes and their heartbeats, for presence across several processes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('server_processes',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('server_processes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_server_processes_heartbeat_ms'), ['heartbeat_ms'], unique=False)


def downgrade():
    with op.batch_alter_table('server_processes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_server_processes_heartbeat_ms'))

    op.drop_table('server_processes')
