SET NOCOUNT ON;
DECLARE @cbm_lock_rc INT;
EXEC @cbm_lock_rc = sp_getapplock @Resource = :lock, @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = -1;
SET NOCOUNT OFF;
SELECT @cbm_lock_rc AS [rc];
