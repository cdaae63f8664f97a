pub mod alipay;
pub mod device;
pub mod meituan;
pub mod number;
#[cfg(feature = "openapi")]
mod openapi;
pub mod order;
pub mod soap;
pub mod time;
pub mod webhook;
pub mod wechatpay;
