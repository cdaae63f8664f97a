pub mod alipay;
pub mod device;
pub mod meituan;
pub mod number;
pub mod order;
pub mod soap;
pub mod webhook;
pub mod wechatpay;
